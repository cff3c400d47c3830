"""An app whose server fails late in its start, once the log and the read models are open
and the dispatcher runs: declaring its schedules raises (loaded by a server subprocess
with --app; importing it anywhere else would break every scheduler of that process)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobledger.schemas.schedules import ScheduleDefinition
from jobledger.services.handlers.app import App
from jobledger.services.schedules.scheduler import Scheduler


async def _declare(self: Scheduler, declared: Mapping[str, ScheduleDefinition]) -> list[Any]:
    # Not an error the CLI explains in one line: its traceback propagates, and holds the
    # node (as the RecursionError of issue 18, item 3 did).
    raise RuntimeError("the declared schedules cannot be read")


Scheduler.declare = _declare  # type: ignore[method-assign]

app = App()


@app.job("noop")
async def noop(ctx: Any, payload: Any) -> None:
    return None
