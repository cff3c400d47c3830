"""Snapshots of the read models, so an as_of applies a few changes and folds a short stretch
of the log rather than everything since offset 0.

A snapshot is a base, or a base with its first `seq` deltas (copies.py): a base is a full
copy of the tables an as_of reads, `NNNNNN.db` in the directory `<stem>.snapshots/` beside
the read models, written as `NNNNNN.db.tmp` and renamed once complete; its deltas are
appended to `NNNNNN.deltas.db`, each in one transaction (a crash mid-delta leaves it
rolled back). A delta costs what changed since the snapshot before it, so they can be
frequent. Once the deltas of the newest base hold BASE_AFTER_ROWS jobs rows (an as_of
applies up to that many), a new base is written in the background, deltas going on
meanwhile: the newest base's file copied with its deltas applied (the first base: a copy
of the read models' tables). Each snapshot's checkpoints say which log position it
reflects. A directory of the previous format (bases only) is read as bases without
deltas. docs/architecture.md ("Point in time") gives the measurements behind the choices.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from jobledger.projections.stats import MINUTE_MS
from jobledger.projections.store_file import schema_shapes, table_shapes
from jobledger.schemas import JOBS
from jobledger.schemas.codec import decode_batch
from jobledger.schemas.common import to_ms
from jobledger.services.log.protocol import Log
from jobledger.services.runtime.clock import Clock
from jobledger.services.runtime.projector import TOPIC_OF_MODEL, Projected, Projector
from jobledger.services.runtime.supervise import cancel_and_wait, crashed, spawn

from .copies import (
    DeltaCopy,
    compact,
    copy_read_models,
    delta_checkpoints,
    delta_rows,
    deltas_path,
)
from .position import Positions

log = logging.getLogger("jobledger.history")
EVERY_EVENTS = 2_000  # records applied between snapshots, by default (architecture.md)
# A new base once the newest one's deltas hold this many jobs rows: an as_of applies at most
# about this many (some 5-10 µs each) besides its fold (docs/architecture.md).
BASE_AFTER_ROWS = 10_000
READ_BATCH = 5_000  # records read at a time for a delta's minute floor
_BASE = re.compile(r"\d{6}\.db")
T = TypeVar("T")


def snapshots_dir(views: Path) -> Path:
    """Where the snapshots of a read-model file live: jobledger.views.db ->
    jobledger.views.snapshots/."""
    return views.with_name(views.stem + ".snapshots")


@dataclass
class Base:
    path: Path
    rows: int = 0  # jobs rows in its deltas so far
    # One as_of at a time folds inside a base (in a transaction it rolls back).
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, compare=False, repr=False)

    @property
    def number(self) -> int:
        return int(self.path.stem)


@dataclass
class Snapshot:
    path: Path  # the base's file
    applied: Positions  # topic -> partition -> next offset: what the snapshot reflects
    seq: int = 0  # deltas of the base applied (0: the base alone)
    base: Base = field(default=None, compare=False)  # type: ignore[assignment]  # set below

    def __post_init__(self) -> None:
        if self.base is None:
            self.base = Base(self.path)

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
        tell). A half-written base is removed, and so are those of another log (read models
        rebuilt over another log, services/node/read_model_check.py, leave them behind) and
        deltas whose base is gone."""
        snapshots = cls(snapshots_dir(views))
        snapshots.directory.mkdir(exist_ok=True)
        for stale in snapshots.directory.glob("*.tmp"):
            stale.unlink()
        bases = []
        for path in sorted(snapshots.directory.glob("*.db")):
            if not _BASE.fullmatch(path.name):
                continue
            if _log_of(path) != log_id:
                log.warning("removing %s: a snapshot of another log", path)
                path.unlink()
                continue
            if not _of_this_schema(path):  # as the read models themselves are rebuilt
                log.warning("removing %s: a snapshot of another version's read models", path)
                path.unlink()
                continue
            bases.append(path)
        for path in snapshots.directory.glob("*.deltas.db"):
            if path.with_name(path.name.replace(".deltas", "")) not in bases:
                _remove_deltas(path)
        found = []
        for path in bases:
            base = Base(path, delta_rows(path))
            found.append(Snapshot(path, _applied(path), 0, base))
            found += [Snapshot(path, _positions(checkpoints), seq, base)
                      for seq, checkpoints in delta_checkpoints(path).items()]
        snapshots.taken = sorted(found, key=lambda s: (s.events, s.base.number, s.seq))
        return snapshots

    def latest_within(self, target: Mapping[str, Mapping[int, int]]) -> Snapshot | None:
        """The newest snapshot at or before the target position (None: fold from empty)."""
        for snapshot in reversed(self.taken):
            if snapshot.within(target):
                return snapshot
        return None

    def newest_chain(self) -> Snapshot | None:
        """The last snapshot of the newest base's chain: what the next delta follows."""
        if not self.taken:
            return None
        newest = max(s.base.number for s in self.taken)
        return max((s for s in self.taken if s.base.number == newest), key=lambda s: s.seq)

    def _add(self, snapshot: Snapshot) -> Snapshot:
        self.taken.append(snapshot)
        self.taken.sort(key=lambda s: (s.events, s.base.number, s.seq))
        log.info("snapshot of the read models at %d events: %s (delta %d)", snapshot.events,
                 snapshot.path, snapshot.seq)
        return snapshot

    async def take_base(self, views: Path) -> Snapshot:
        """A new base: the newest base's chain compacted into one file (copies.compact),
        or, with none, a copy of the read models as they are now."""
        return await self._base(views, self.newest_chain())

    async def take(self, views: Path) -> Snapshot:
        """A new base, a copy of the read models as they are now."""
        return await self._base(views, None)

    async def _base(self, views: Path, compacted: Snapshot | None) -> Snapshot:
        """A cancel waits for the copy's end (a thread cannot be stopped, and must not write
        on after a stop)."""
        number = max((s.base.number for s in self.taken), default=0) + 1
        path = self.directory / f"{number:06d}.db"
        await _to_the_end(asyncio.to_thread(_write_base, views, compacted, path))
        return self._add(Snapshot(path, _applied(path)))

    async def take_delta(self, views: Path, jobs: Log,
                         times: AppliedTimes | None = None) -> Snapshot:
        """Append to the newest base's deltas what changed since its chain's last snapshot
        (there must be one: take_base first). Once begun, it runs to its end (a cancel
        waits for it): it holds a read transaction on the views and a write on the deltas.
        times: what the projector applied, to spare reading the records back."""
        after = self.newest_chain()
        assert after is not None, "a delta follows a base"
        return self._add(await _to_the_end(self._take_delta(views, jobs, after, times)))

    async def _take_delta(self, views: Path, jobs: Log, after: Snapshot,
                          times: AppliedTimes | None) -> Snapshot:
        copy = await asyncio.to_thread(DeltaCopy, views, after.path)
        try:
            applied = _positions(await asyncio.to_thread(copy.checkpoints))
            since, until = after.applied.get(JOBS, {}), applied.get(JOBS, {})
            heard = times.oldest(since, until) if times is not None else None
            floor = heard[0] if heard else await minute_floor(jobs, since, until)
            rows = await asyncio.to_thread(copy.write, after.seq + 1, since, floor)
        finally:
            await asyncio.to_thread(copy.close)
        after.base.rows += rows
        return Snapshot(after.path, applied, after.seq + 1, after.base)


async def _to_the_end(coro: Coroutine[Any, Any, T]) -> T:
    """Await coro; if the caller is cancelled meanwhile, let it finish first, then raise."""
    task = asyncio.ensure_future(coro)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.gather(task, return_exceptions=True)
        raise


class AppliedTimes:
    """The oldest by-minute stats row each committed jobs batch changed, by partition and
    offsets, so that a delta learns its minute floor from the projector instead of reading
    its records back from the log: on Kafka that read consumed the jobs topic a second
    time, a sixth of the drain and 46 MB (docs/performance.md). Where the batches heard do
    not cover a range (applied before this listened), the delta reads it."""

    def __init__(self, applied: Mapping[int, int]):
        self._ends = dict(applied)  # partition -> end of the last batch heard
        self._spans: dict[int, list[tuple[int, int, int | None]]] = {}  # (start, end, minute)

    def heard(self, projected: Projected) -> None:
        """A projector listener: called with each committed jobs batch, in log order."""
        stats = projected.change.stats
        minute = min((key[0] for rows in (stats.ended, stats.ended_by, stats.pending_moves)
                      for key in rows), default=None)
        for partition, end in projected.positions.items():
            start = self._ends.get(partition, 0)
            if end > start:
                self._ends[partition] = end
                self._spans.setdefault(partition, []).append((start, end, minute))

    def oldest(self, since: Mapping[int, int], until: Mapping[int, int]
               ) -> tuple[int | None] | None:
        """(the oldest minute the batches from `since` to `until` changed, None: none), or
        None when the batches heard do not cover that range."""
        oldest: int | None = None
        for partition, end in until.items():
            at = since.get(partition, 0)
            for start, stop, minute in self._spans.get(partition, []):
                if stop <= at or start >= end:
                    continue
                if start > at:
                    return None  # a gap: records not heard of
                if minute is not None:
                    oldest = minute if oldest is None else min(oldest, minute)
                at = stop
            if at < end:
                return None
        return (oldest,)

    def forget_before(self, offsets: Mapping[int, int]) -> None:
        """Drop the batches wholly before these offsets (the next delta starts there)."""
        for partition, at in offsets.items():
            self._spans[partition] = [s for s in self._spans.get(partition, []) if s[1] > at]


async def minute_floor(jobs: Log, since: Mapping[int, int], until: Mapping[int, int]
                       ) -> int | None:
    """The minute of the oldest event time among the jobs records from `since` to `until`
    (None: none): the stats rows by minute that those records can have changed start there
    (a jobs event only counts in the minute of its own time, projections/stats.py). If some
    of those records are no longer in the log (cut by --log-retention), minute 0: every
    row, since their times cannot be read."""
    oldest: int | None = None
    for partition, end in until.items():
        start = since.get(partition, 0)
        while start < end:
            records = await jobs.read(partition, start, limit=min(READ_BATCH, end - start))
            if not records or records[0].offset != start:
                return 0
            envs, _undecodable = await asyncio.to_thread(decode_batch, records)
            times = [to_ms(env.time) for env in envs]
            if times:
                oldest = min(times) if oldest is None else min(oldest, *times)
            start = records[-1].offset + 1
    return None if oldest is None else oldest // MINUTE_MS * MINUTE_MS


def _write_base(views: Path, compacted: Snapshot | None, path: Path) -> None:
    """The base at path: `compacted` (a base and deltas) in one file, or (None, or a base
    alone) a copy of the live read models."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    _remove_deltas(deltas_path(path))  # of an earlier base of this number, removed
    if compacted is not None and compacted.seq:
        compact(compacted.path, compacted.seq, tmp)
    else:
        copy_read_models(views, tmp)
    tmp.replace(path)


def _remove_deltas(path: Path) -> None:
    for each in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        each.unlink(missing_ok=True)


def _of_this_schema(path: Path) -> bool:
    """Are the base's tables those of this version's schema.sql (the store writes rows by
    position, so a column added since cannot be made up in a base)?"""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        shapes = table_shapes(conn)
    finally:
        conn.close()
    return all(shapes.get(name) == sql for name, sql in schema_shapes().items())


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
    return _positions(rows)


def _positions(checkpoints: list[tuple[str, int, int]]) -> Positions:
    applied: Positions = {}
    for model, partition, offset in checkpoints:
        applied.setdefault(TOPIC_OF_MODEL[model], {})[partition] = offset
    return applied


class Snapshotter:
    """Takes a snapshot of a node's read models every `every_events` records applied, or
    every `every_seconds` by the node's clock when any record was applied since the last
    (0: not by that measure): a delta, or the first base; a new base is copied in the
    background once the newest one's deltas hold base_after_rows jobs rows, deltas going on
    meanwhile."""

    def __init__(self, snapshots: Snapshots, views: Path, projector: Projector, clock: Clock,
                 every_events: int, every_seconds: float, base_after_rows: int = BASE_AFTER_ROWS):
        self.snapshots = snapshots
        self.views = views
        self.projector = projector
        self.clock = clock
        self.every_events = every_events
        self.every_seconds = every_seconds
        self.base_after_rows = base_after_rows
        self._task: asyncio.Task[None] | None = None
        self._base: asyncio.Task[Snapshot] | None = None  # a base being copied
        self.times = AppliedTimes(projector.positions["jobs"])
        projector.listeners.append(self.times.heard)

    def start(self) -> None:
        if self.every_events or self.every_seconds:
            self._task = spawn(self._run(), "snapshots")

    def crashed(self) -> list[str]:
        return crashed([t for t in (self._task, self._base) if t is not None])

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        await cancel_and_wait(self._base)

    async def _run(self) -> None:
        newest = self.snapshots.newest_chain()
        last = max((s.events for s in self.snapshots.taken), default=0)
        while True:
            await self._due(last)
            last = (await self._take(newest)).events
            newest = self.snapshots.newest_chain()

    async def _take(self, newest: Snapshot | None) -> Snapshot:
        if newest is None:
            return await self.snapshots.take_base(self.views)
        if newest.base.rows >= self.base_after_rows and (self._base is None or self._base.done()):
            if self._base is not None:
                self._base.result()  # a failed copy fails the snapshotter
            self._base = spawn(self.snapshots.take_base(self.views), "snapshot-base")
        chain = self.snapshots.newest_chain()  # (a base may have landed since `newest`)
        if chain is not None and (self._base is None or self._base.done()):
            # No chain will start before this one's end again (a base being copied starts
            # one where it was spawned: keep what that will need until it is done).
            self.times.forget_before(chain.applied.get(JOBS, {}))
        return await self.snapshots.take_delta(self.views, self.projector.backend.topic(JOBS),
                                               self.times)

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
