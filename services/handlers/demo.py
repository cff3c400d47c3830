"""The demo jobs of `jobledger serve --demo`: echo, sleep, fail and flaky."""

from __future__ import annotations

import asyncio
from typing import Any

from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext

demo = App()


@demo.job("echo")
async def echo(ctx: JobContext, payload: Any) -> Any:
    """The result is the payload."""
    return payload


@demo.job("sleep")
async def sleep(ctx: JobContext, payload: dict[str, Any]) -> dict[str, float]:
    """Sleep payload["seconds"], reporting progress once a second and logging at INFO
    (start, end) and TRACE (each second): the dashboard's run logs show both levels."""
    seconds = float(payload.get("seconds", 1)) if isinstance(payload, dict) else 1.0
    whole = int(seconds)
    ctx.log.info("sleeping", seconds=seconds)
    for second in range(whole):
        ctx.progress(second, whole)
        await asyncio.sleep(1)
        ctx.log.trace("slept a second", second=second + 1, of=whole)
    await asyncio.sleep(seconds - whole)
    ctx.progress(whole, whole)
    ctx.log.info("woke up", seconds=seconds)
    return {"slept": seconds}


@demo.job("fail")
async def fail(ctx: JobContext, payload: Any) -> None:
    """Always raises, with payload["message"] if given."""
    message = payload.get("message") if isinstance(payload, dict) else None
    ctx.log.error("failing on purpose", attempt=ctx.attempt)
    raise RuntimeError(message or "the fail job always fails")


@demo.job("flaky")
async def flaky(ctx: JobContext, payload: Any) -> dict[str, int]:
    """Raises while attempt <= payload["fail_times"], then succeeds."""
    fail_times = int(payload.get("fail_times", 1)) if isinstance(payload, dict) else 1
    if ctx.attempt <= fail_times:
        ctx.log.warn("flaky failure", attempt=ctx.attempt, fail_times=fail_times)
        raise RuntimeError(f"flaky failure on attempt {ctx.attempt}")
    return {"succeeded_on_attempt": ctx.attempt}
