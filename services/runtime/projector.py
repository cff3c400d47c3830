"""The projection host of the embedded mode: tails the log, folds each batch, writes it.

One model per topic, each with its own checkpoint: jobs (jobs, runs, stats, queues tables)
from the jobs topic, run_logs from the logs topic, workers from the workers topic,
schedules from the schedules topic, keys (api_keys and users) from the security topic. Records
below a model's checkpoint are skipped, so redelivery applies nothing twice.

A live projector (retry=True, as nodes make it) outlasts a write that fails with a fault
that can pass (a full disk: services/runtime/faults.py): it runs the same transaction
again after a backoff by its clock until it commits, and reports the fault meanwhile.
Nothing is lost or applied twice: a failed transaction rolled back, and the batches after
it wait in log order. A replay (retry=False) stops at the first failed write instead.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from operator import attrgetter
from typing import TypeVar

from msgspec.structs import force_setattr
from opentelemetry import trace
from opentelemetry.trace import Tracer

from jobledger.projections.fold import JobsChange, fold_jobs, fold_workers, log_rows
from jobledger.projections.jobs import JobState, Reducer, detached, reduce_job
from jobledger.projections.keys import KeyState, fold_keys
from jobledger.projections.queues import QueueState
from jobledger.projections.schedules import ScheduleState, fold_schedules
from jobledger.projections.store import ReadModelStore
from jobledger.projections.users import UserState, fold_users
from jobledger.projections.workers import declared_task_types
from jobledger.schemas import JOBS, LOGS, SCHEDULES, SECURITY, WORKERS, Envelope, topic_of
from jobledger.schemas.codec import Undecodable, decode_batch
from jobledger.schemas.common import to_ms
from jobledger.schemas.envelope import TOPIC_OF_TYPE
from jobledger.schemas.jobs import QUEUE_EVENTS
from jobledger.schemas.lifecycle import TERMINAL
from jobledger.schemas.security import KEY_EVENTS, USER_EVENTS
from jobledger.services.log.protocol import Log, LogBackend, LogError, Record
from jobledger.services.runtime.clock import Clock, SystemClock
from jobledger.services.runtime.faults import Faults, passing_fault, retried_reads
from jobledger.services.runtime.supervise import crashed, spawn
from jobledger.services.telemetry.spans import project_span

TYPES_OF_TOPIC = {
    topic: frozenset(cls for cls, t in TOPIC_OF_TYPE.items() if t == topic)
    for topic in set(TOPIC_OF_TYPE.values())
}
_NONE: frozenset[str] = frozenset()
TOPIC_OF_MODEL = {"jobs": JOBS, "run_logs": LOGS, "workers": WORKERS, "schedules": SCHEDULES,
                  "keys": SECURITY}
CATCH_UP_BATCH = 20_000  # records per transaction when catching up
# New jobs remembered at most (expect_new), as many as the state cache holds: beyond it
# they are forgotten, which only means decoding and looking them up. A host that never
# folds them (a node projecting only some partitions) keeps at most this many envelopes.
MAX_NEW_JOBS = 50_000


@dataclass(frozen=True)
class Projected:
    """Told to listeners after a jobs batch is committed."""

    change: JobsChange
    positions: Mapping[int, int]


Listener = Callable[[Projected], None]
# Told the final state of every schedule a committed batch changed (removed ones too).
ScheduleListener = Callable[[list[ScheduleState]], None]
# Told the final state of every API key a committed batch changed (revoked ones too).
KeyListener = Callable[[list[KeyState]], None]
# Told the final state of every username a committed batch changed (removed ones too).
UserListener = Callable[[list[UserState]], None]
# Told the model and the envelopes of each committed batch of the other models (run_logs,
# workers, schedules, keys): the WebSocket hub follows a task's log lines and workers so.
ModelListener = Callable[[str, list[Envelope]], None]
JobPredicate = Callable[[JobState], bool]
T = TypeVar("T")


class _StateCache(OrderedDict[str, JobState]):
    """The most recently touched job states, so a job's next event needs no SELECT."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def trim(self) -> None:
        while len(self) > self.size:
            self.popitem(last=False)


class Projector:
    def __init__(self, backend: LogBackend, store: ReadModelStore, cache_size: int = 50_000,
                 clock: Clock | None = None, retry: bool = False):
        """retry: write again, after a backoff by clock, a batch whose write failed with a
        fault that can pass (a full disk), rather than fail (see the module's doc)."""
        self.backend = backend
        self.store = store
        self.retry = retry
        self.clock = clock or SystemClock()
        self.faults = Faults(self.clock)
        self.tracer: Tracer | None = None  # a span per batch, when tracing is on
        self.positions: dict[str, dict[int, int]] = {m: {} for m in TOPIC_OF_MODEL}
        self.listeners: list[Listener] = []
        self.schedule_listeners: list[ScheduleListener] = []
        self.key_listeners: list[KeyListener] = []
        self.user_listeners: list[UserListener] = []
        self.model_listeners: list[ModelListener] = []
        self.quarantined = 0
        self._cache = _StateCache(cache_size)
        self._queues: dict[str, QueueState] = {}
        self._write_lock = asyncio.Lock()  # one transaction at a time on the one connection
        self._progress = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self._job_waiters: dict[str, list[tuple[JobPredicate, asyncio.Future[JobState]]]] = {}
        self._writing: asyncio.Future[None] | None = None  # the jobs batch being written
        self._folded_positions: dict[int, int] = {}  # where folding the jobs topic got to
        self._new_jobs: dict[str, Envelope] = {}  # by job id: see expect_new
        # The jobs reducer; the embedded node shares one with its dispatcher (SharedReductions).
        self.reduce: Reducer = reduce_job

    def expect_new(self, envs: Iterable[Envelope]) -> None:
        """The JobEnqueued envelopes of jobs this process is about to append under ids it
        has just drawn (fresh UUIDv7s). No earlier record can name such a job, so the first
        record with its key is this envelope: its record is not decoded again (the envelope
        is what decoding it gives), and the job is folded without a read-model lookup (a
        trip to aiosqlite's thread and a SELECT per batch). Call forget_new with them if
        their append fails."""
        new = self._new_jobs
        if len(new) > MAX_NEW_JOBS:
            new.clear()
        for env in envs:
            new[env.key] = env

    def forget_new(self, envs: Iterable[Envelope]) -> None:
        for env in envs:
            self._new_jobs.pop(env.key, None)

    def _take_new(self, records: Sequence[Record]) -> set[str]:
        """The ids of the new jobs (expect_new) whose JobEnqueued is among records. Each
        such record not yet decoded gets its envelope, placed where the record landed."""
        new, taken = self._new_jobs, set()
        for rec in records:
            env = new.pop(rec.key, None)
            if env is None:
                continue
            taken.add(rec.key)
            if rec.decoded is None:
                force_setattr(env, "partition", rec.partition)
                force_setattr(env, "offset", rec.offset)
                rec.decoded = env
        return taken

    async def load(self) -> None:
        for model in TOPIC_OF_MODEL:
            self.positions[model] = await self.store.checkpoints(model)
        self._queues = await self.store.load_queues()

    def start(self) -> None:
        """Tail every topic in the background, from the checkpoints (call load() first)."""
        for model in TOPIC_OF_MODEL:
            self._tasks.append(spawn(self._follow(model), f"project-{model}"))

    def crashed(self) -> list[str]:
        writing = self._writing
        failed_write = writing is not None and writing.done() and not writing.cancelled() \
            and writing.exception() is not None
        return crashed(self._tasks) + (["project-jobs-write"] if failed_write else [])

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._writing is not None:
            if self.faults.open:  # a write retrying until the disk frees: not worth waiting
                self._writing.cancel()
            await asyncio.gather(self._writing, return_exceptions=True)

    async def _follow(self, model: str) -> None:
        log = self.backend.topic(TOPIC_OF_MODEL[model])

        async def tail() -> AsyncIterator[list[Record]]:
            await self.settled()  # after a failed read: from what is written
            # Name every partition: a checkpoint holds only partitions already applied, and
            # a tail follows only the partitions it is given (log.py, requirement 4).
            done = self.positions[model]
            return log.tail({p: done.get(p, 0) for p in range(log.partitions)})

        async for records in retried_reads(self.faults, f"projection {model} reads", tail):
            if model != "jobs":
                await self.apply(model, records)
                continue
            # A jobs batch is written on aiosqlite's thread while the next one is read and
            # folded here: when the log runs ahead (a drain), both cores work. One batch is
            # written at a time, in log order; records that arrive meanwhile make the next
            # batch bigger, and a bigger batch coalesces more changes into one row.
            writing = self._writing
            await self.submit(model, records)
            if writing is not None:
                await asyncio.shield(writing)

    async def catch_up(self, on_batch: Callable[[int], None] | None = None) -> None:
        """Apply everything up to the current end of every topic (used by replay). The next
        batch is read while the current one is applied."""
        for model, topic in TOPIC_OF_MODEL.items():
            try:
                log = self.backend.topic(topic)
            except LogError:
                continue  # a log written before this topic existed: nothing to apply
            for partition, end in (await log.end_offsets()).items():
                await self._catch_up_partition(model, log, partition, end, on_batch)
        await self.settled()

    async def _catch_up_partition(
        self, model: str, log: Log, partition: int, end: int,
        on_batch: Callable[[int], None] | None,
    ) -> None:
        def read_from(offset: int) -> asyncio.Future[list[Record]] | None:
            if offset >= end:
                return None
            return asyncio.ensure_future(
                log.read(partition, offset, limit=min(CATCH_UP_BATCH, end - offset)))

        reading = read_from(self.positions[model].get(partition, 0))
        while reading is not None:
            records = await reading
            reading = read_from(records[-1].offset + 1) if records else None
            await self.submit(model, records)
            if on_batch:
                on_batch(len(records))

    async def apply(self, model: str, records: Sequence[Record]) -> None:
        """Apply one batch of one model's topic in one transaction; return once written."""
        await self.submit(model, records)
        if model == "jobs":  # the others are written by submit itself
            await self.settled()

    async def settled(self) -> None:
        """Wait for the jobs batch being written, if any (raising its error)."""
        if self._writing is not None:
            await asyncio.shield(self._writing)

    async def submit(self, model: str, records: Sequence[Record]) -> None:
        """Apply one batch of one model's topic in one transaction. A jobs batch is folded
        now and written in the background, so the next batch folds while this one is
        written; listeners, waiters and positions hear of it once it is committed."""
        if self.tracer is None or not records:
            await self._submit(model, records)
            return
        lag = to_ms(self.clock.now()) - records[0].timestamp_ms
        with trace.use_span(project_span(self.tracer, model, len(records), lag),
                            end_on_exit=True):
            await self._submit(model, records)

    async def _submit(self, model: str, records: Sequence[Record]) -> None:
        done = self.positions[model]
        if model == "jobs" and self._writing is not None:
            done = self._folded_positions  # the batch in flight is applied as far as we fold
        fresh = [r for r in records if r.offset >= done.get(r.partition, 0)]
        if not fresh:
            return
        positions = dict(done)
        for rec in fresh:
            positions[rec.partition] = rec.offset + 1
        new = self._take_new(fresh) if model == "jobs" and self._new_jobs else _NONE
        envs, bad = decode_batch(fresh)
        envs, misplaced = split_misplaced(envs, TOPIC_OF_MODEL[model], fresh)
        bad += misplaced
        if model == "jobs":
            await self._fold_and_write_jobs(envs, positions, bad, new)
            return
        tell = await self._written(
            model, lambda: self._write_other(model, envs, positions, bad))
        self.quarantined += len(bad)
        self.positions[model] = positions
        if tell is not None:
            tell()
        for model_listener in self.model_listeners:
            model_listener(model, envs)
        async with self._progress:
            self._progress.notify_all()

    async def _write_other(
        self, model: str, envs: list[Envelope], positions: dict[int, int],
        bad: list[Undecodable],
    ) -> Callable[[], None] | None:
        """Load what a batch of a model other than jobs needs, fold it and write it in one
        transaction; what tells the listeners of what it changed, once it is committed."""
        if model == "run_logs":
            await self.store.write_logs(log_rows(envs), positions, bad)
            return None
        if model == "workers":
            workers = await self.store.load_workers({e.key for e in envs})
            await self.store.write_workers(fold_workers(envs, workers), positions, bad,
                                           declared_task_types(envs))
            return None
        if model == "keys":
            return await self._write_security(envs, positions, bad)
        ids = {e.event.schedule_id for e in envs}  # type: ignore[union-attr]  # all have one
        changed = fold_schedules(envs, await self.store.load_schedules(ids))
        await self.store.write_schedules(changed, positions, bad)
        return _telling(self.schedule_listeners, list(changed.values()))

    async def _write_security(
        self, envs: list[Envelope], positions: dict[int, int], bad: list[Undecodable],
    ) -> Callable[[], None] | None:
        """The security topic's batch: its key events and its user events, written in one
        transaction under the one checkpoint of the topic."""
        key_envs = [e for e in envs if type(e.event) in KEY_EVENTS]
        user_envs = [e for e in envs if type(e.event) in USER_EVENTS]
        ids = {e.event.key_id for e in key_envs}  # type: ignore[union-attr]  # all have one
        names = {e.event.username for e in user_envs}  # type: ignore[union-attr]  # all have one
        keys = fold_keys(key_envs, await self.store.load_keys(ids)) if ids else {}
        users = fold_users(user_envs, await self.store.load_users(names)) if names else {}
        await self.store.write_keys(keys, positions, bad, users)
        tells = [t for t in (_telling(self.key_listeners, list(keys.values())),
                             _telling(self.user_listeners, list(users.values())))
                 if t is not None]

        def tell() -> None:
            for each in tells:
                each()

        return tell if tells else None

    async def _fold_and_write_jobs(
        self, envs: list[Envelope], positions: dict[int, int], bad: list[Undecodable],
        new: AbstractSet[str],
    ) -> None:
        """new: jobs known to have no row yet (expect_new)."""
        cache = self._cache
        # Not `{...} - cache.keys()`: a set minus a keys view walks every cached key.
        # The ignore: every event of the jobs topic but a queue event names its job.
        wanted = {job_id for e in envs if type(e.event) not in QUEUE_EVENTS
                  and (job_id := e.event.job_id) not in cache  # type: ignore[union-attr]
                  and job_id not in new}
        if self._writing is not None and self._writing.done():
            await self.settled()  # raise a failed write's error here, in the follower
        if wanted:
            # Every job a batch in flight changed is in the cache until that batch is
            # written (see _evict), so the store is up to date for the others.
            cache.update(await self.store.load_jobs(wanted))
        try:
            change = fold_jobs(envs, cache, self._queues, self.reduce)
        except BaseException:
            cache.clear()
            raise
        jobs = change.jobs
        for job_id, state in jobs.items():
            cache.move_to_end(job_id)
            if state.status not in TERMINAL:  # (finished ones leave the cache once written)
                jobs[job_id] = cache[job_id] = detached(state)
        self._folded_positions = positions
        self._writing = asyncio.ensure_future(
            self._write_jobs(self._writing, change, positions, bad))

    async def _write_jobs(
        self, previous: asyncio.Future[None] | None, change: JobsChange,
        positions: dict[int, int], bad: list[Undecodable],
    ) -> None:
        if previous is not None:
            await previous  # commits stay in log order; a failed one fails those after it
        try:
            await self._written("jobs", lambda: self.store.write_jobs(change, positions, bad))
        except BaseException:
            self._cache.clear()  # it may hold changes that were rolled back
            raise
        self.quarantined += len(bad)
        self.positions["jobs"] = positions
        self._evict(change, last=self._folded_positions is positions)
        self._wake_job_waiters(change)
        for listener in self.listeners:
            listener(Projected(change, positions))
        async with self._progress:
            self._progress.notify_all()

    async def _written(self, model: str, write: Callable[[], Awaitable[T]]) -> T:
        """Run one batch's write (its loads and its transaction) under the write lock; its
        result. With retry, a fault that can pass is retried after a backoff until it
        passes: the transaction rolled back, so running it again applies it once."""
        part = f"projection {model}"
        while True:
            try:
                async with self._write_lock:
                    result = await write()
            except Exception as error:
                fault = passing_fault(error) if self.retry else None
                if fault is None:
                    raise
                await self.faults.clock.sleep(self.faults.failing(part, fault))
            else:
                self.faults.resumed(part)
                return result

    def _evict(self, change: JobsChange, last: bool) -> None:
        """Finished jobs leave the cache once written (rarely touched again: keep the room
        for unfinished ones). Nothing a batch still being written changed is evicted: a job
        that is not in the cache is read from the store, which must then be up to date."""
        cache = self._cache
        for job_id, state in change.jobs.items():
            if state.status in TERMINAL and cache.get(job_id) is state:
                del cache[job_id]
        if last:  # no later batch in flight: the oldest entries are all written
            cache.trim()

    def watch_job(self, job_id: str, predicate: JobPredicate) -> asyncio.Future[JobState]:
        """A future of the job's first projected state (after now) that satisfies predicate."""
        future: asyncio.Future[JobState] = asyncio.get_running_loop().create_future()
        self._job_waiters.setdefault(job_id, []).append((predicate, future))
        future.add_done_callback(lambda f: self._drop_waiter(job_id, f))
        return future

    def _drop_waiter(self, job_id: str, future: asyncio.Future[JobState]) -> None:
        waiters = [w for w in self._job_waiters.get(job_id, []) if w[1] is not future]
        if waiters:
            self._job_waiters[job_id] = waiters
        else:
            self._job_waiters.pop(job_id, None)

    def _wake_job_waiters(self, change: JobsChange) -> None:
        if not self._job_waiters:
            return
        for job_id in self._job_waiters.keys() & change.jobs.keys():
            state = change.jobs[job_id]
            for predicate, future in list(self._job_waiters.get(job_id, [])):
                if not future.done() and predicate(state):
                    future.set_result(state)

    def applied(self) -> int:
        """How many records of every topic are applied (the sum of the checkpoints)."""
        return sum(sum(parts.values()) for parts in self.positions.values())

    async def wait_applied(self, records: int) -> None:
        """Return once at least this many records are applied (applied())."""
        async with self._progress:
            await self._progress.wait_for(lambda: self.applied() >= records)

    async def wait_for(self, model: str, partition: int, offset: int) -> None:
        """Return once the record at (partition, offset) of model's topic is applied."""
        async with self._progress:
            await self._progress.wait_for(
                lambda: self.positions[model].get(partition, 0) > offset
            )


_event_of = attrgetter("event")


def _telling(listeners: list[Callable[[list[T]], None]],
             changed: list[T]) -> Callable[[], None] | None:
    """What tells each listener the states a committed batch changed (None: none changed)."""
    if not changed:
        return None

    def tell() -> None:
        for listener in listeners:
            listener(changed)

    return tell


def split_misplaced(
    envs: list[Envelope], topic: str, records: Iterable[Record]
) -> tuple[list[Envelope], list[Undecodable]]:
    """Events that decode but belong on another topic are quarantined like undecodable ones."""
    types_here = TYPES_OF_TOPIC[topic]
    if types_here.issuperset(map(type, map(_event_of, envs))):
        return envs, []
    value = {(r.partition, r.offset): r.value for r in records}
    good, bad = [], []
    for env in envs:
        if topic_of(env.event) == topic:
            good.append(env)
        else:
            error = f"{env.type} belongs on the {topic_of(env.event)} topic, not {topic}"
            raw = value[(env.partition, env.offset)]
            bad.append(Undecodable(env.partition, env.offset, env.key, raw, error))
    return good, bad
