"""Handlers for the recovery tests (loaded by a server subprocess with --app)."""

from __future__ import annotations

import asyncio
from typing import Any

from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext

app = App()


@app.job("hang_first_attempt")
async def hang_first_attempt(ctx: JobContext, payload: Any) -> dict[str, int]:
    """Attempt 1 hangs until its process dies; later attempts succeed."""
    if ctx.attempt == 1:
        await asyncio.Event().wait()
    return {"attempt": ctx.attempt}


@app.job("noop")
async def noop(ctx: JobContext, payload: Any) -> None:
    return None
