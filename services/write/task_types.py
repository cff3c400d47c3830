"""Which task types the write side accepts, so that a typo (`ecko`) is refused at the door
instead of failing later with "no handler registered".

A type is known when this process has a handler for it, or (the Kafka mode, where the
handlers run in other processes) once any worker has declared it in its WorkerStarted and
the read models show it. A known type stays known after its workers stop, so producers can
go on enqueueing while workers restart. `allow_unknown` (`--allow-unknown-task-types`)
accepts every type, for producers that enqueue before any worker exists.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence

from jobledger.schemas.api import TaskRequest
from jobledger.services.write.producer import InvalidJob

ALLOW_FLAG = "--allow-unknown-task-types"


class UnknownTaskType(InvalidJob):
    """No handler, here or on any worker, for this task type (400 UNKNOWN_TASK_TYPE)."""

    def __init__(self, task_type: str, known: Sequence[str], field: str = "task_type"):
        listed = ", ".join(known) if known else "none yet"
        super().__init__(
            f"unknown task type {task_type!r}; the known task types are: {listed} "
            f"(start the server with {ALLOW_FLAG} to accept any)", field, "UNKNOWN_TASK_TYPE")
        self.task_type = task_type
        self.known = list(known)


class TaskTypes:
    """handled: the types this process has handlers for (its App's handlers, read live).
    declared: how to read the types workers declared (the read models), or None when only
    this process's handlers count (the embedded mode: its workers are its own)."""

    def __init__(self, handled: Collection[str],
                 declared: Callable[[], Awaitable[list[str]]] | None = None,
                 allow_unknown: bool = False):
        self.handled = handled
        self.read_declared = declared
        self.allow_unknown = allow_unknown
        self.declared: frozenset[str] = frozenset()  # as of the last read

    async def check(self, requests: Sequence[TaskRequest], batch: bool = False) -> None:
        """Raise UnknownTaskType for the first request of an unknown type. Its field is
        `task_type`, or with batch (a POST /tasks/batch body) `tasks[i].task_type`."""
        if self.allow_unknown:
            return
        for i, request in enumerate(requests):
            task_type = request.task_type
            # Two set lookups per task, no await: this is on the enqueue path.
            if task_type not in self.handled and task_type not in self.declared:
                await self.require(task_type, f"tasks[{i}].task_type" if batch else "task_type")

    async def require(self, task_type: str, field: str = "task_type") -> None:
        """Raise UnknownTaskType (naming field) unless task_type is known."""
        if self.allow_unknown or task_type in self.handled or task_type in self.declared:
            return
        if self.read_declared is not None:
            # A miss reads the declared types again: a worker may have declared it since.
            self.declared = frozenset(await self.read_declared())
            if task_type in self.declared:
                return
        raise UnknownTaskType(task_type, self.known(), field)

    def known(self) -> list[str]:
        return sorted({*self.handled, *self.declared})

    async def accepted(self) -> list[str] | None:
        """The types check() accepts now, read afresh; None when it accepts any."""
        if self.allow_unknown:
            return None
        if self.read_declared is not None:
            self.declared = frozenset(await self.read_declared())
        return self.known()
