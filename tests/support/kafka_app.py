"""Handlers for the Kafka-mode process tests (loaded by worker subprocesses with --app)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from jobledger.services.handlers.app import App, interval
from jobledger.services.handlers.context import JobContext

app = App()
DOOMED = "JOBLEDGER_TEST_DOOMED"  # set in the environment of the worker a test will kill


@app.job("noop")
async def noop(ctx: JobContext, payload: Any) -> None:
    return None


@app.job("hang_if_doomed")
async def hang_if_doomed(ctx: JobContext, payload: Any) -> dict[str, int]:
    """Hangs in the worker that is about to be killed, so its attempt dies with it; runs
    through anywhere else."""
    if os.environ.get(DOOMED):
        await asyncio.Event().wait()
    return {"attempt": ctx.attempt}


# Schedules firing every second, for scheduler processes (--app kafka_app:scheduled --schedules).
# Their ids hash onto every partition of a 4-partition schedules topic.
scheduled = App()
TICKS = 8


async def tick(ctx: JobContext, payload: Any) -> None:
    return None


for _n in range(TICKS):
    scheduled.job(f"tick_{_n}", schedule=interval(seconds=1, id=f"every_second_{_n}",
                                                  max_instances=1000))(tick)


@app.job("fails_once")
async def fails_once(ctx: JobContext, payload: Any) -> dict[str, int]:
    """Fails its first attempt and completes its second (the trace tests)."""
    if ctx.attempt == 1:
        raise RuntimeError("the first attempt fails")
    return {"attempt": ctx.attempt}
