"""The log's own retention (`jobledger serve --log-retention AGE`, docs/audit.md "Retention").

A cut deletes a SQLite log's older records and keeps, instead, "the base": the read models
as they were at the cut, `<stem>.views.base.db` beside them. Everything that started from
offset 0 starts from the base after a cut: read models rebuilt at start (deleted, or
behind the cut), `jobledger replay`, and an as_of with no snapshot after the cut.

Where a partition is cut (its new start): the first record newer than now - AGE by the
node's clock, but never past
1. the oldest unfinished job's first record (jobs topic: `created_offset` of every job
   pending, scheduled or running), so an unfinished job keeps its whole history;
2. the oldest definition of a schedule that exists (schedules topic: `defined_offset`);
3. what the projector has applied, and what the partition's owner (dispatcher,
   scheduler) has folded: nothing anyone still has to read goes;
4. the partition's last record: a partition keeps at least one, so its end (the next
   offset) is still known when the log is reopened.
The security topic (API keys, users) is never cut.

A cut, in order, each step safe to crash after: (a) the base is built from the previous
one (none: from an empty store) by folding the log up to the new starts, written as
`.tmp` and renamed; (b) the log records the new starts, the chain's link before each and
the cut's moment (services/log/sqlite.py:cut_log), in one transaction; (c) the records
before the starts are deleted in batches. A start after a crash finishes (b) and (c) from
the base it finds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from jobledger.projections.jobs import JobState
from jobledger.projections.rows import job_from_row
from jobledger.projections.store import ReadModelStore, fetch_all
from jobledger.projections.store_file import read_on_disk, remove_db
from jobledger.schemas import JOBS, SCHEDULES, SECURITY
from jobledger.schemas.common import iso_ms, to_ms
from jobledger.services.log.protocol import DataFileError
from jobledger.services.log.sqlite import SQLiteLogBackend, cut_log, read_cut_time, read_cuts
from jobledger.services.runtime.clock import Clock
from jobledger.services.runtime.projector import TOPIC_OF_MODEL, Projector
from jobledger.services.runtime.supervise import Periodic

from .fold import fold_to
from .position import AsOfError, Positions, format_position
from .snapshots import Snapshot

log = logging.getLogger("jobledger.retention")
CUT_EVERY_S = 3600.0  # the cadence of --retain-finished (retention.py)
_UNFINISHED = "'scheduled', 'pending', 'in_progress'"
Owners = Callable[[], Mapping[str, Mapping[int, int]]]  # topic -> partition -> folded to


def base_path(views: Path) -> Path:
    """The base of a read-model file: jobledger.views.db -> jobledger.views.base.db."""
    return views.with_name(views.stem + ".base.db")


@dataclass
class Retained:
    """What a log still holds after its cuts (nothing cut: `starts` is empty)."""

    starts: Positions = field(default_factory=dict)  # topic -> partition -> first offset kept
    time_ms: int = 0  # the earliest moment an answer can be given at
    base: Snapshot | None = None  # the read models at `starts`

    @property
    def cut(self) -> bool:
        return bool(self.starts)

    def earliest(self) -> str:
        return (f"the log keeps records from {iso_ms(self.time_ms)} on (position "
                f"{format_position(self.starts)}); older ones were removed by --log-retention")

    def refuse_time(self, asked: str, when_ms: int) -> None:
        """AsOfError AS_OF_BEFORE_RETAINED for a time before the earliest moment kept."""
        self._refuse_without_base()
        if self.cut and when_ms < self.time_ms:
            raise AsOfError("AS_OF_BEFORE_RETAINED", f"as_of: {asked} is before what the log "
                            f"keeps: {self.earliest()}")

    def refuse_position(self, positions: Positions, only: tuple[str, int] | None = None) -> None:
        """AsOfError AS_OF_BEFORE_RETAINED for a position before a partition's start."""
        self._refuse_without_base()
        for topic, parts in self.starts.items():
            for partition, start in parts.items():
                if only is not None and only != (topic, partition):
                    continue
                if positions.get(topic, {}).get(partition, 0) < start:
                    raise AsOfError("AS_OF_BEFORE_RETAINED", f"as_of: {topic}/{partition} is "
                                    f"before its first record kept ({start}): "
                                    f"{self.earliest()}")

    def _refuse_without_base(self) -> None:
        """A cut log whose base is gone cannot say what was at the cut: no as_of at all
        (folding the tail onto nothing would answer wrongly)."""
        if self.cut and self.base is None:
            raise AsOfError("AS_OF_BEFORE_RETAINED", "as_of: the log was cut by "
                            "--log-retention and the read models at the cut (the base, "
                            "<read models>.base.db) are missing: restore the base beside the "
                            "read models")

    def start_for(self, snapshot: Snapshot | None) -> Snapshot | None:
        """Where an as_of folds from: the snapshot chosen, unless the log was cut after it
        (its records up to the cut are gone): then the base."""
        if not self.cut or (snapshot is not None
                            and _at_or_after(snapshot.applied, self.starts)):
            return snapshot
        return self.base

    async def task_start(self, task_id: str, partition: int,
                         offsets: list[int]) -> tuple[JobState | None, list[int]]:
        """One task's as_of: its state at the cut (from the base) and the offsets of its
        events still in the log, when some of its events were cut; else (None, offsets)."""
        start = self.starts.get(JOBS, {}).get(partition, 0)
        if not offsets or offsets[0] >= start:
            return None, offsets
        kept = [o for o in offsets if o >= start]
        if self.base is None:
            return None, kept
        rows = await asyncio.to_thread(_job_row, self.base.path, task_id)
        return (job_from_row(rows[0]) if rows else None), kept


def _at_or_after(applied: Positions, starts: Positions) -> bool:
    return all(applied.get(t, {}).get(p, 0) >= s for t, parts in starts.items()
               for p, s in parts.items())


def _job_row(base: Path, task_id: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{base}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT * FROM jobs WHERE job_id = ?", (task_id,)).fetchall()
    finally:
        conn.close()


async def open_retained(backend: SQLiteLogBackend, views: Path) -> Retained:
    """What the log keeps, once a cut a crash interrupted is finished (see the module)."""
    base = base_path(views)
    remove_db(base.with_name(base.name + ".tmp"))  # a base half-built when the process died
    applied = await _base_of(backend, base)
    if applied is not None:
        # Finish a cut: the base may be ahead of the recorded cut (a crash between (a) and
        # (b)), or records before the cut may be left (a crash in (c)).
        await asyncio.to_thread(cut_log, backend.path, _slots(applied))
    starts = await _read_starts(backend)
    return Retained(starts, await _cut_time(backend),
                    Snapshot(base, applied) if applied is not None else None)


async def _cut_time(backend: SQLiteLogBackend) -> int:
    time_ms: int | None = await backend.run(read_cut_time, backend.reader)
    return time_ms or 0


async def _base_of(backend: SQLiteLogBackend, base: Path) -> Positions | None:
    """The position of the base at path (None: none), removed if another log's."""
    on_disk = await asyncio.to_thread(read_on_disk, base)
    if on_disk is None:
        return None
    identity = await backend.identity()
    if identity is not None and on_disk.source is not None \
            and on_disk.source[0] != identity.log_id:
        log.warning("removing %s: the base of another log", base)
        remove_db(base)
        return None
    return _positions(on_disk.checkpoints)


async def _read_starts(backend: SQLiteLogBackend) -> Positions:
    starts: Positions = {}
    for (topic, partition), (start, _link) in (await backend.run(read_cuts,
                                                                 backend.reader)).items():
        starts.setdefault(topic, {})[partition] = start
    return starts


def _slots(positions: Positions) -> dict[tuple[str, int], int]:
    return {(t, p): o for t, parts in positions.items() for p, o in parts.items() if o}


def _applied(path: Path) -> Positions:
    """The log position a read-model file reflects (its checkpoints, by topic)."""
    on_disk = read_on_disk(path)
    return _positions(on_disk.checkpoints if on_disk else {})


def _positions(checkpoints: Mapping[str, Mapping[int, int]]) -> Positions:
    return {TOPIC_OF_MODEL[model]: dict(parts) for model, parts in checkpoints.items()}


def install_base(views: Path, retained: Retained, log_name: str) -> None:
    """Before the read models open: if they are behind the cut (deleted, never built, or
    an older copy), replace them with the base, from which the projector folds the rest.
    DataFileError if the base they need is missing."""
    if not retained.cut:
        return
    behind = not (views.exists() and _at_or_after(_applied(views), retained.starts))
    if retained.base is None and behind:
        raise DataFileError(f"{log_name} was cut by --log-retention and the read models "
                            f"{views} are behind the cut, but the base {base_path(views)} "
                            "they start from is missing: restore it from a backup")
    if retained.base is None:
        log.warning("%s was cut by --log-retention and its base %s is missing: no as_of is "
                    "answered, and the read models cannot be rebuilt, until it is restored",
                    log_name, base_path(views))
    if retained.base is None or not behind:
        return
    log.warning("the read models %s start from the base %s: %s", views, retained.base.path,
                retained.earliest())
    copy_db(retained.base.path, views)


def copy_db(source: Path, out: Path) -> None:
    """Copy a SQLite file with the backup API into out (replaced), through out.tmp."""
    tmp = out.with_name(out.name + ".tmp")
    remove_db(tmp)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(tmp)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    _publish(tmp, out)


def _publish(tmp: Path, out: Path) -> None:
    """Make tmp durable and rename it over out (removing out's -wal and -shm first)."""
    with open(tmp, "rb+") as file:
        os.fsync(file.fileno())
    remove_db(out)
    os.replace(tmp, out)
    directory = os.open(out.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


async def build_base(backend: SQLiteLogBackend, base: Path, target: Positions) -> None:
    """Make the base the read models at target: the current base (none: an empty store)
    with the log folded up to target."""
    tmp = base.with_name(base.name + ".tmp")
    remove_db(tmp)
    if base.exists():
        await asyncio.to_thread(copy_db, base, tmp)
    store = await ReadModelStore.open(tmp, bulk=True)
    try:
        identity = await backend.identity()
        if identity is not None:
            await store.record_source(identity.log_id, identity.epoch)
        projector = Projector(backend, store)
        await projector.load()
        await fold_to(projector, backend, target, TOPIC_OF_MODEL)
        await store.finish_bulk()
    finally:
        await store.close()
    await asyncio.to_thread(_rollback_journal, tmp)
    await asyncio.to_thread(_publish, tmp, base)


def _rollback_journal(path: Path) -> None:
    """Leave the file in rollback-journal mode, as snapshots are: an as_of folds inside it
    in a transaction kept in memory and rolled back (asof.py), and a WAL file would need
    its -wal and -shm beside it."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()


class LogRetention(Periodic):
    """Cuts the log every CUT_EVERY_S by the node's clock, and once at start."""

    def __init__(self, backend: SQLiteLogBackend, views: Path, retained: Retained,
                 store: ReadModelStore, projector: Projector, clock: Clock, age: timedelta,
                 owners: Owners):
        super().__init__(clock, CUT_EVERY_S, "log-retention")
        self.backend = backend
        self.views = views
        self.retained = retained
        self.store = store  # the live read models: which jobs and schedules pin the log
        self.projector = projector
        self.age = age
        self.owners = owners
        self.deleted = 0
        self._cutting = asyncio.Lock()  # the hourly pass and a caller's, one at a time

    async def run_once(self) -> int:
        return await self.cut()

    async def cut(self) -> int:
        """Cut the log where the module says; how many records were deleted."""
        async with self._cutting:
            starts = await self.plan()
            if starts == self.retained.starts:
                return 0
            base = base_path(self.views)
            await build_base(self.backend, base, starts)
            deleted = await asyncio.to_thread(cut_log, self.backend.path, _slots(starts))
            for (topic, partition), start in _slots(starts).items():
                self.backend.topic(topic).forget_before(partition, start)
            self.retained.starts = starts
            self.retained.time_ms = await _cut_time(self.backend)
            self.retained.base = Snapshot(base, await asyncio.to_thread(_applied, base))
            self.deleted += deleted
            log.info("log retention: deleted %d records; %s", deleted, self.retained.earliest())
            return deleted

    async def plan(self) -> Positions:
        """Every partition's start after this cut (see the module for the rules)."""
        older = to_ms(self.clock.now()) - int(self.age.total_seconds() * 1000)
        pins = {JOBS: await self._firsts("SELECT partition, MIN(created_offset) FROM jobs"
                                         f" WHERE status IN ({_UNFINISHED}) GROUP BY partition"),
                SCHEDULES: await self._firsts("SELECT partition, MIN(defined_offset)"
                                              " FROM schedules GROUP BY partition")}
        owners = self.owners()
        starts = {t: dict(parts) for t, parts in self.retained.starts.items()}
        for model, topic in TOPIC_OF_MODEL.items():
            if topic == SECURITY:
                continue
            topic_log = self.backend.topic(topic)
            for partition, end in (await topic_log.end_offsets()).items():
                newer = await topic_log.offset_for_time(partition, older + 1) if end else None
                start = min(end if newer is None else newer, end - 1,
                            self.projector.positions[model].get(partition, 0),
                            end if topic not in owners else owners[topic].get(partition, 0),
                            pins.get(topic, {}).get(partition, end))
                if start > starts.get(topic, {}).get(partition, 0):
                    starts.setdefault(topic, {})[partition] = start
        return starts

    async def _firsts(self, sql: str) -> dict[int, int]:
        return {p: o for p, o in await fetch_all(self.store.db, sql)}
