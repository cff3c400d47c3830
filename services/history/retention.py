"""Retention of finished tasks' read-model rows (`--retain-finished`, docs/audit.md).

Every RETENTION_EVERY_S by the node's clock (and once at start), the rows of tasks that
finished longer than `age` ago are deleted from the read models: the jobs row, its runs
and their log lines. With an archive file, each task is first appended to it as one JSON
line (the task as GET /api/v1/tasks/{id} shows it, and its runs), and the file is fsynced
before anything is deleted. The log keeps every event: the task's history
(GET …/history, whose index job_events is kept), its as_of, and `jobledger replay` still
see it. The counts of /stats still count it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import timedelta
from pathlib import Path

import msgspec

from jobledger.projections.queries import Queries
from jobledger.projections.store import ReadModelStore, Transaction, fetch_all
from jobledger.schemas.common import to_ms
from jobledger.schemas.lifecycle import TERMINAL
from jobledger.services.runtime.clock import Clock
from jobledger.services.runtime.supervise import Periodic

log = logging.getLogger("jobledger.retention")
RETENTION_EVERY_S = 3600.0
PRUNE_BATCH = 1_000  # tasks archived and deleted per transaction
_FINISHED = ", ".join(f"'{s}'" for s in sorted(TERMINAL))
_json = msgspec.json.Encoder()


class Archived(msgspec.Struct):
    """One line of the archive file."""

    task: msgspec.Raw
    runs: msgspec.Raw


class Retention(Periodic):
    def __init__(self, store: ReadModelStore, queries: Queries, clock: Clock, age: timedelta,
                 archive: Path | None = None):
        super().__init__(clock, RETENTION_EVERY_S, "retention")
        self.store = store
        self.queries = queries
        self.age = age
        self.archive = archive
        self.pruned = 0
        self._pruning = asyncio.Lock()  # the hourly pass and a caller's, one at a time

    async def run_once(self) -> int:
        return await self.prune()

    async def prune(self) -> int:
        """Archive (if asked) and delete the rows of every task finished before now - age;
        how many tasks."""
        async with self._pruning:
            return await self._prune()

    async def _prune(self) -> int:
        before = to_ms(self.clock.now() - self.age)
        pruned = 0
        while True:
            rows = await fetch_all(
                self.store.db, f"SELECT job_id FROM jobs WHERE status IN ({_FINISHED})"
                " AND finished_at < ? LIMIT ?", (before, PRUNE_BATCH))
            ids = [r[0] for r in rows]
            if not ids:
                break
            if self.archive is not None:
                await self._archive(ids)
            await self._delete(ids)
            pruned += len(ids)
        if pruned:
            self.pruned += pruned
            log.info("retention: pruned the rows of %d tasks finished before %s", pruned,
                     (self.clock.now() - self.age).isoformat())
        return pruned

    async def _archive(self, ids: list[str]) -> None:
        lines = []
        for task_id in ids:
            task = await self.queries.task(task_id)
            runs = await self.queries.runs_of(task_id)
            lines.append(_json.encode(Archived(msgspec.Raw(_json.encode(task)),
                                               msgspec.Raw(_json.encode(runs)))) + b"\n")
        await asyncio.to_thread(_append_durably, self.archive, b"".join(lines))

    async def _delete(self, ids: list[str]) -> None:
        tx = Transaction()
        keys = [(i,) for i in ids]
        tx.many("DELETE FROM run_logs WHERE run_id IN (SELECT run_id FROM runs WHERE job_id = ?)",
                keys)
        tx.many("DELETE FROM runs WHERE job_id = ?", keys)
        tx.many("DELETE FROM jobs WHERE job_id = ?", keys)
        await self.store.db._execute(tx.run, self.store.db)  # type: ignore[no-untyped-call]  # aiosqlite: untyped


def _append_durably(path: Path | None, data: bytes) -> None:
    assert path is not None
    with open(path, "ab") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
