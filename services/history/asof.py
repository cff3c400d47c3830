"""The read models as they were at a past moment (`as_of`), folded from the log by the
same reducers and queried by the same queries as the live ones.

A moment is a log position (position.py): a time becomes, in each partition, the first
offset whose record time is after it. The state at a position starts from the newest
snapshot at or before it (starting_point; snapshots.py; none: an empty store): its base,
its deltas applied in SQL, and the records after it folded in by the projector, all inside
a transaction that is rolled back once the query is answered, so the snapshot files are
never changed. Only the models an as_of query reads are folded, and only the tables they
read written (FOLDED_MODELS, ReadModelStore.audit_rows). One task's state needs only that
task's events, found through job_events.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import aiosqlite

from jobledger.projections.jobs import reduce_job
from jobledger.projections.queries import Queries, task_of_state
from jobledger.projections.store import ReadModelStore, sql_file
from jobledger.schemas import JOBS
from jobledger.schemas.api import TaskDetail
from jobledger.schemas.codec import decode_batch
from jobledger.schemas.common import iso_ms, to_ms
from jobledger.services.log.protocol import Log, LogBackend, LogError, Record
from jobledger.services.runtime.clock import Clock
from jobledger.services.runtime.projector import TOPIC_OF_MODEL, Projector

from .copies import apply_deltas, deltas_path
from .fold import READ_BATCH, fold_to
from .log_retention import Retained
from .position import AsOfError, Positions, format_position, parse_position, parse_time
from .snapshots import Snapshot, Snapshots

# The models whose tables the as_of queries read (stats, tasks, queues, workers, schedules):
# not run_logs nor keys, whose topics an as_of need not fold at all.
FOLDED_MODELS = ("jobs", "workers", "schedules")


@dataclass(frozen=True)
class Moment:
    """A resolved as_of: the position it stands for and its time (Unix ms): the time
    asked for, or for a position the time of its newest record (0 before any)."""

    positions: Positions
    time_ms: int

    @property
    def position(self) -> str:
        return format_position(self.positions)

    @property
    def time(self) -> str:
        return iso_ms(self.time_ms) or ""


class History:
    """The as_of side of one node: its log, its live read models (for job_events) and its
    snapshots (None: every as_of folds from an empty store)."""

    def __init__(self, backend: LogBackend, live: Queries, clock: Clock,
                 snapshots: Snapshots | None = None, retain_finished: timedelta | None = None):
        self.backend = backend
        self.live = live
        self.clock = clock
        self.snapshots = snapshots
        self.retain_finished = retain_finished  # --retain-finished (retention.py)
        self.retained = Retained()  # what --log-retention left of the log (log_retention.py)

    def lists_finished_since(self, moment: Moment) -> str | None:
        """With --retain-finished: from when an answer at the moment lists finished tasks
        (those that finished before may have been pruned from the snapshot it starts
        from; they are still counted, and found one by one)."""
        if self.retain_finished is None:
            return None
        return iso_ms(max(0, moment.time_ms - int(self.retain_finished.total_seconds() * 1000)))

    def _logs(self) -> dict[str, Log]:
        logs = {}
        for topic in TOPIC_OF_MODEL.values():
            try:
                logs[topic] = self.backend.topic(topic)
            except LogError:
                continue  # a log written before this topic existed
        return logs

    async def first_time_ms(self) -> int | None:
        """The time of the log's oldest record still kept (None: an empty log): the
        earliest moment an as_of can show anything at (the dashboard's time slider)."""
        if self.retained.cut:
            return self.retained.time_ms
        first: int | None = None
        for log in self._logs().values():
            for partition, end in (await log.end_offsets()).items():
                oldest = await log.read(partition, 0, limit=1) if end else []
                if oldest and (first is None or oldest[0].timestamp_ms < first):
                    first = oldest[0].timestamp_ms
        return first

    async def moment(self, as_of: str, only: tuple[str, int] | None = None) -> Moment:
        """The moment an as_of names; AsOfError if it is malformed or in the future.
        only: resolve just this (topic, partition) (one task's as_of)."""
        logs = self._logs()
        when = parse_time(as_of)
        if when is None:
            positions = parse_position(as_of, {t: log.partitions for t, log in logs.items()})
            self.retained.refuse_position(positions, only)
            return Moment(positions, await self._checked(positions, logs))
        self.retained.refuse_time(as_of, to_ms(when))
        return Moment(await self._at_time(when, logs, only), to_ms(when))

    async def _at_time(self, when: datetime, logs: Mapping[str, Log],
                       only: tuple[str, int] | None) -> Positions:
        now = self.clock.now()
        if when > now:
            raise AsOfError("AS_OF_IN_FUTURE", f"as_of: {when.isoformat()} is in the future "
                            f"(the server's time is {now.isoformat()})")
        after = to_ms(when) + 1  # records stamped at the moment itself are in
        positions: Positions = {}
        for topic, log in logs.items():
            ends = await log.end_offsets()
            for partition, end in ends.items():
                if only is not None and only != (topic, partition):
                    continue
                offset = await log.offset_for_time(partition, after) if end else 0
                positions.setdefault(topic, {})[partition] = end if offset is None else offset
        return positions

    async def _checked(self, positions: Positions, logs: Mapping[str, Log]) -> int:
        """The time of the position's newest record; AsOfError past the log's end."""
        newest = 0
        for topic, parts in positions.items():
            ends = await logs[topic].end_offsets()
            for partition, offset in parts.items():
                if offset > ends.get(partition, 0):
                    raise AsOfError("AS_OF_IN_FUTURE", f"as_of: {topic}/{partition}:{offset} "
                                    f"is past the end of the log ({ends.get(partition, 0)} "
                                    "records)")
                if offset:
                    (last,) = await logs[topic].read(partition, offset - 1, limit=1)
                    newest = max(newest, last.timestamp_ms)
        return newest

    def starting_point(self, target: Positions) -> Snapshot | None:
        """Where an as_of at the target position starts its fold: the newest snapshot at or
        before it, or None: an empty store, folding the log from offset 0. On a cut log
        (--log-retention), never a snapshot from before the cut: the base kept at it."""
        snapshot = self.snapshots.latest_within(target) if self.snapshots else None
        return self.retained.start_for(snapshot)  # not from before a cut of the log

    @asynccontextmanager
    async def at(self, moment: Moment) -> AsyncIterator[Queries]:
        """Queries over the read models as they were at the moment."""
        snapshot = self.starting_point(moment.positions)
        if snapshot is None:
            async with _folded(None, self.backend, moment.positions) as queries:
                yield queries
            return
        async with snapshot.base.lock, _folded(snapshot, self.backend,
                                               moment.positions) as queries:
            yield queries

    async def task(self, task_id: str, moment: Moment) -> TaskDetail | None:
        """The task as it was at the moment, from its own events alone (None: not yet
        enqueued then)."""
        log = self.backend.topic(JOBS)
        partition = log.partition_for(task_id)
        end = moment.positions.get(JOBS, {}).get(partition, 0)
        offsets = [o for p, o in await self.live.event_positions(task_id)
                   if p == partition and o < end]
        state, offsets = await self.retained.task_start(task_id, partition, offsets)
        records = [r for o in offsets for r in await log.read(partition, o, limit=1)]
        applied = (await self.live.checkpoints("jobs")).get(partition, 0)
        if applied < end:  # the live read models lag: the rest of its events are not indexed
            records += [r for r in await _read_all(log, partition, applied, end)
                        if r.key == task_id]
        envs, _undecodable = decode_batch(records)
        for env in envs:
            state = reduce_job(state, env) or state
        return task_of_state(state) if state is not None else None


async def _read_all(log: Log, partition: int, start: int, end: int) -> list[Record]:
    out: list[Record] = []
    while start < end:
        records = await log.read(partition, start, limit=min(READ_BATCH, end - start))
        if not records:
            break
        out += records
        start = records[-1].offset + 1
    return out


@asynccontextmanager
async def _folded(snapshot: Snapshot | None, backend: LogBackend,
                  target: Positions) -> AsyncIterator[Queries]:
    """Open the snapshot's base (or an empty store in memory), apply its deltas and fold
    the log up to target inside one transaction, yield Queries over it, roll the
    transaction back."""
    path = str(snapshot.path) if snapshot is not None else ":memory:"
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        if snapshot is None:
            await db.executescript(sql_file("schema.sql"))
            await db.executescript(sql_file("indexes.sql"))
        # The fold's changes stay in memory and never reach the file (rolled back).
        for pragma in ("PRAGMA main.journal_mode=MEMORY", "PRAGMA cache_spill=OFF",
                       "PRAGMA temp_store=MEMORY", "PRAGMA cache_size=-65536"):
            await db.execute(pragma)
        if snapshot is not None and snapshot.seq:  # (attached before the transaction)
            await db.execute("ATTACH ? AS deltas", (str(deltas_path(snapshot.path)),))
        await db.execute("BEGIN")
        if snapshot is not None and snapshot.seq:
            seq = snapshot.seq
            await db._execute(lambda: apply_deltas(db._conn, seq))  # type: ignore[no-untyped-call]  # aiosqlite: untyped
        store = ReadModelStore(db, Path(path), writer=False)
        store.audit_rows = False
        projector = Projector(backend, store)
        await projector.load()
        await fold_to(projector, backend, target, FOLDED_MODELS)
        yield Queries(db)
    finally:
        if db.in_transaction:
            await db.execute("ROLLBACK")
        await db.close()
