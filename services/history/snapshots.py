"""Snapshots of the read models, so an as_of folds at most one snapshot interval of the log.

A snapshot is a copy of the read-model tables an as_of reads (copy_read_models), made from
a connection of its own in one read transaction (every model's rows and checkpoints as of
one commit), written as `<n>.db.tmp` and renamed to `<n>.db` once complete, in the
directory `<stem>.snapshots/` beside the read models. Its checkpoints say which log position it
reflects. docs/architecture.md ("Point in time") gives the measurements behind the choice.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from jobledger.services.runtime.clock import Clock
from jobledger.services.runtime.projector import TOPIC_OF_MODEL, Projector
from jobledger.services.runtime.supervise import cancel_and_wait, crashed, spawn

from .position import Positions

log = logging.getLogger("jobledger.history")


def snapshots_dir(views: Path) -> Path:
    """Where the snapshots of a read-model file live: jobledger.views.db ->
    jobledger.views.snapshots/."""
    return views.with_name(views.stem + ".snapshots")


@dataclass
class Snapshot:
    path: Path
    applied: Positions  # topic -> partition -> next offset: what the snapshot reflects
    # One as_of at a time folds inside a snapshot (in a transaction it rolls back).
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, compare=False, repr=False)

    @property
    def events(self) -> int:
        return sum(sum(parts.values()) for parts in self.applied.values())

    def within(self, target: Mapping[str, Mapping[int, int]]) -> bool:
        """Is everything this snapshot applied at or before the target position?"""
        return all(o <= target.get(topic, {}).get(p, 0)
                   for topic, parts in self.applied.items() for p, o in parts.items())


class Snapshots:
    """The snapshots of one read-model file, oldest first."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.taken: list[Snapshot] = []

    @classmethod
    def open(cls, views: Path, log_id: str | None) -> Snapshots:
        """The snapshots on disk beside `views` of the log `log_id` (None: a log that cannot
        tell). A half-written one is removed, and so are those of another log: read models
        rebuilt over another log (services/node/read_model_check.py) leave them behind."""
        snapshots = cls(snapshots_dir(views))
        snapshots.directory.mkdir(exist_ok=True)
        for stale in snapshots.directory.glob("*.tmp"):
            stale.unlink()
        found = []
        for path in snapshots.directory.glob("*.db"):
            if _log_of(path) != log_id:
                log.warning("removing %s: a snapshot of another log", path)
                path.unlink()
                continue
            found.append(Snapshot(path, _applied(path)))
        snapshots.taken = sorted(found, key=lambda s: s.events)
        return snapshots

    def latest_within(self, target: Mapping[str, Mapping[int, int]]) -> Snapshot | None:
        """The newest snapshot at or before the target position (None: fold from empty)."""
        for snapshot in reversed(self.taken):
            if snapshot.within(target):
                return snapshot
        return None

    async def take(self, views: Path) -> Snapshot:
        """Copy the read models as they are now into a new snapshot."""
        snapshot = await asyncio.to_thread(self._take, views)
        self.taken.append(snapshot)
        self.taken.sort(key=lambda s: s.events)
        log.info("snapshot of the read models at %d events: %s", snapshot.events, snapshot.path)
        return snapshot

    def _take(self, views: Path) -> Snapshot:
        number = max((int(s.path.stem) for s in self.taken), default=0) + 1
        path = self.directory / f"{number:06d}.db"
        tmp = path.with_name(path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        copy_read_models(views, tmp)
        tmp.replace(path)
        return Snapshot(path, _applied(path))


# Tables an as_of never reads: the job_events index (one row per event, as big as the jobs
# table), runs and run logs (GET /runs has no as_of). A fold writes into them all the same,
# so they are made, empty.
NOT_IN_SNAPSHOTS = frozenset({"job_events", "runs", "run_logs", "quarantine"})


def copy_read_models(views: Path, out: Path) -> None:
    """Copy the read models' tables but NOT_IN_SNAPSHOTS into a new file, in one read
    transaction (every model's rows and checkpoints as of one commit), the indexes built
    after the rows. (VACUUM INTO copies every table: 2.4 times the size; docs/audit.md.)"""
    live = sqlite3.connect(views, isolation_level=None)
    try:
        schema = live.execute("SELECT type, name, sql FROM sqlite_master"
                              " WHERE sql IS NOT NULL AND type IN ('table', 'index')").fetchall()
        copy = sqlite3.connect(out, isolation_level=None)
        try:
            copy.execute("PRAGMA journal_mode=OFF")  # a .tmp file: a crash only removes it
            for kind, _name, sql in schema:
                if kind == "table":
                    copy.execute(sql)
        finally:
            copy.close()
        live.execute("ATTACH ? AS snapshot", (str(out),))
        live.execute("PRAGMA snapshot.synchronous=OFF")
        live.execute("BEGIN")
        for kind, name, _sql in schema:
            if kind == "table" and name not in NOT_IN_SNAPSHOTS:
                live.execute(f"INSERT INTO snapshot.{name} SELECT * FROM main.{name}")
        live.execute("COMMIT")
    finally:
        live.close()
    copy = sqlite3.connect(out, isolation_level=None)
    try:
        for kind, _name, sql in schema:
            if kind == "index":
                copy.execute(sql)
        # A rollback journal: an as_of keeps its fold's changes in memory (asof.py).
        copy.execute("PRAGMA journal_mode=DELETE")
    finally:
        copy.close()


def _log_of(path: Path) -> str | None:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT log_id FROM log_source").fetchone()
    finally:
        conn.close()
    return row[0] if row else None


def _applied(path: Path) -> Positions:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT model, partition, next_offset FROM checkpoints").fetchall()
    finally:
        conn.close()
    applied: Positions = {}
    for model, partition, offset in rows:
        applied.setdefault(TOPIC_OF_MODEL[model], {})[partition] = offset
    return applied


class Snapshotter:
    """Takes a snapshot of a node's read models every `every_events` records applied, or
    every `every_seconds` by the node's clock when any record was applied since the last
    (0: not by that measure)."""

    def __init__(self, snapshots: Snapshots, views: Path, projector: Projector, clock: Clock,
                 every_events: int, every_seconds: float):
        self.snapshots = snapshots
        self.views = views
        self.projector = projector
        self.clock = clock
        self.every_events = every_events
        self.every_seconds = every_seconds
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.every_events or self.every_seconds:
            self._task = spawn(self._run(), "snapshots")

    def crashed(self) -> list[str]:
        return crashed([self._task] if self._task else [])

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        last = self.snapshots.taken[-1].events if self.snapshots.taken else 0
        while True:
            await self._due(last)
            last = (await self.snapshots.take(self.views)).events

    async def _due(self, last: int) -> None:
        """Return once a snapshot is due after one that reflected `last` records."""
        waits = []
        if self.every_events:
            waits.append(asyncio.ensure_future(
                self.projector.wait_applied(last + self.every_events)))
        if self.every_seconds:
            waits.append(asyncio.ensure_future(self._timer(last)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def _timer(self, last: int) -> None:
        await self.clock.sleep(self.every_seconds)
        await self.projector.wait_applied(last + 1)
