"""Background tasks that do not die in silence."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from jobledger.services.log.protocol import DataFileError
from jobledger.services.runtime.clock import Clock

log = logging.getLogger("jobledger")


def spawn(coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
    """Start a task whose crash is logged with its traceback when it happens."""
    task = asyncio.create_task(coro, name=name)
    task.add_done_callback(_report)
    return task


def _report(task: asyncio.Task[Any]) -> None:
    if task.cancelled() or task.exception() is None:
        return
    error = task.exception()
    if isinstance(error, DataFileError):  # its message says what is wrong and what to do
        log.error("background task %s stopped: %s", task.get_name(), error)
    else:
        log.error("background task %s crashed", task.get_name(), exc_info=error)


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel the task (if any) and wait until it has ended, whatever it ended with."""
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def crashed(tasks: list[asyncio.Task[Any]]) -> list[str]:
    """Names of the tasks that ended with an exception."""
    return [t.get_name() for t in tasks if t.done() and not t.cancelled() and t.exception()]


class Periodic:
    """A pass (run_once) run at start and then every every_s seconds by a clock, in a
    background task: the retention of finished tasks' rows, and of the log."""

    def __init__(self, clock: Clock, every_s: float, name: str):
        self.clock = clock
        self.every_s = every_s
        self.name = name
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> object:
        raise NotImplementedError

    def start(self) -> None:
        self._task = spawn(self._run(), self.name)

    def crashed(self) -> list[str]:
        return crashed([self._task] if self._task else [])

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            await self.run_once()
            await self.clock.sleep(self.every_s)
