"""The handlers `jobledger serve --app bench.noop_app:app` runs in the benchmark: the same
no-op job body as every peer's (bench/recorder.py)."""

from __future__ import annotations

from typing import Any

from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext

from .recorder import job_started

app = App()


@app.job("noop")
async def noop(ctx: JobContext, payload: Any) -> None:
    job_started(payload)
