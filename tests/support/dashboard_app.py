"""A job beside the demo ones for the dashboard's browser tests (loaded by the server
subprocess with --demo --app dashboard_app:app): `spawn` enqueues one `echo` child, so a
child's causes run into its parent."""

from __future__ import annotations

from typing import Any

from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext

app = App()


@app.job("spawn")
async def spawn(ctx: JobContext, payload: Any) -> dict[str, str]:
    return {"child": await ctx.enqueue("echo", payload)}
