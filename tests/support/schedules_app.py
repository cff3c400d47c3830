"""Handlers and a code-declared schedule for the schedule tests that run a real server
(loaded by a server subprocess with --app schedules_app:app)."""

from __future__ import annotations

from typing import Any

from jobledger.services.handlers.app import App, interval
from jobledger.services.handlers.context import JobContext

app = App()


@app.job("tick", schedule=interval(seconds=1, id="every_second", max_instances=1000))
async def tick(ctx: JobContext, payload: Any) -> None:
    return None
