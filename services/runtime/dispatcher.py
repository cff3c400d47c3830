"""The jobs' partition owner: the only one that decides picks, lease expiry, timeouts and retries.

It follows the jobs topic of its partitions (its PartitionOwner, services/runtime/
partition_owner.py, holds them), applies the same pure reducer as the projections to the
jobs it holds in memory (unfinished ones only), and reacts to each change by appending
decisions. A decision shows in its state only once it is read back from the log, so the
log order is the truth; until then the job is "in flight". When a failed attempt runs
again is its RetryPolicy's; renewing the leases of running attempts, its Heartbeats'.

An append of its own that fails (a full disk) is taken again after a backoff by its clock
(services/runtime/faults.py), and reported meanwhile: a failed pick stops all picking for
that long (picking again at once would spin on the log's refusals), a failed end of an
attempt, due time or cancel is decided again. Heartbeats and log lines are not: the next
beat renews a lease, and a handler's log line is no write anyone was told is durable.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from msgspec.structs import replace

from jobledger.projections.jobs import JobState, Reducer, detached, reduce_job
from jobledger.projections.queues import QueueState
from jobledger.schemas import (
    JOBS,
    WORKERS,
    Actor,
    ActorKind,
    Envelope,
    JobCancelled,
    JobDue,
    JobEnqueued,
    JobFailed,
    JobLeaseExpired,
    JobLogged,
    JobPicked,
    JobStatus,
    JobSucceeded,
    LogLevel,
    WorkerStarted,
    WorkerStopped,
)
from jobledger.schemas.common import to_ms, uuid7
from jobledger.schemas.lifecycle import TERMINAL, WAITING
from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext
from jobledger.services.log.protocol import LogBackend, Position
from jobledger.services.runtime.backoff import Backoff
from jobledger.services.runtime.clock import Clock
from jobledger.services.runtime.executor import (
    Cancelled,
    Executor,
    Failed,
    Outcome,
    Running,
    Succeeded,
)
from jobledger.services.runtime.faults import Faults, Later, passing_fault
from jobledger.services.runtime.heartbeats import Heartbeats
from jobledger.services.runtime.partition_owner import PartitionOwner
from jobledger.services.runtime.partition_state import JobsFold, JobsSnapshot, merge_queues
from jobledger.services.runtime.ready_set import ReadySet, ready_key
from jobledger.services.runtime.retry_policy import RetryPolicy
from jobledger.services.runtime.server_log import log_handler_line
from jobledger.services.runtime.supervise import crashed, spawn
from jobledger.services.runtime.timers import Timer, TimerKind, Timers
from jobledger.services.telemetry.context import current_carrier
from jobledger.services.telemetry.jobs import JobTraces
from jobledger.services.write.producer import Producer, task_request
from jobledger.services.write.publisher import NO_CAUSE, Cause, Done, Publisher, unchecked

S = JobStatus
FINISHED_KEYED_MEMORY = 100_000  # finished keyed jobs kept in memory; older: known_jobs
APPENDS = "dispatcher appends"  # the part its failed appends are reported as (Faults)
WORKER_STOPPED = "WorkerStopped"  # the error of an attempt handed back at a stop (_hand_back)
KnownJobs = Callable[[Collection[str]], Awaitable[Collection[str]]]


@dataclass
class DispatcherConfig:
    worker_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{uuid7()[-6:]}")
    concurrency: int = 8
    lease_seconds: float = 30.0
    heartbeat_seconds: float | None = None  # default: a third of the lease
    backoff: Backoff = field(default_factory=Backoff)
    shutdown_grace_seconds: float = 10.0
    # Picks appended but not yet read back, at most. Handlers start before their pick is
    # durable, so without a bound a drain runs tens of thousands of decisions ahead of the
    # log's writer: their entries and callbacks live long enough to reach the GC's oldest
    # generation, and full collections then take a fifth of the event loop (docs/performance.md).
    max_unread_picks: int = 512

    @property
    def heartbeat_every(self) -> float:
        return self.heartbeat_seconds or self.lease_seconds / 3


def cause_of(job: JobState) -> Cause:
    """A decision of the owner about a job: caused by the event that last changed its
    status or asked to cancel it (JobState.cause_id), in the job's chain."""
    return Cause(causation_id=job.cause_id, correlation_id=job.correlation_id)


def attempt_cause(ctx: JobContext) -> Cause:
    """What a running attempt reports (its log lines, heartbeats, end, the jobs it
    enqueues): caused by the pick that started it."""
    return Cause(causation_id=ctx.pick_id, correlation_id=ctx.correlation_id)


class Dispatcher(JobsFold):
    def __init__(
        self, backend: LogBackend, app: App, clock: Clock, config: DispatcherConfig,
        partitions: Collection[int] | None = None, traces: JobTraces | None = None,
    ):
        self.backend = backend
        self.traces = traces  # None: tracing is off (services/telemetry/jobs.py)
        self.app = app
        self.clock = clock
        self.config = config
        self.ownership = PartitionOwner(backend.topic(JOBS), self, JobsSnapshot, partitions)
        # The ownership's own set and dict (never rebound): the partitions held, and the
        # next offset to apply in each.
        self.partitions, self.positions = self.ownership.partitions, self.ownership.positions
        self.jobs: dict[str, JobState] = {}  # unfinished jobs of my partitions
        self.ready = ReadySet()
        self.queues: dict[str, QueueState] = {}
        self.worker_actor = Actor(ActorKind.WORKER, config.worker_id)
        # Its decisions are not fsynced on their own (services/log/protocol.py, append's sync): no
        # client waits on them, and the next client write's fsync makes them durable.
        self.publisher = Publisher(backend, clock, Actor(ActorKind.DISPATCHER, config.worker_id),
                                   sync=False)
        self.executor = Executor(app, config.concurrency, self._reported, self._emit_log,
                                 freed=self._schedule_fill, enqueue=self._enqueue_child,
                                 traces=traces)
        self.producer = Producer(self.publisher, clock)
        self.timers = Timers(clock, self._fire)
        self.retries = RetryPolicy(app.handlers, config.backoff, clock)
        self.heartbeats = Heartbeats(self.executor, self.publisher, clock, self.worker_actor,
                                     config.lease_seconds, config.heartbeat_every,
                                     lambda: self.partitions)
        self._in_flight: set[str] = set()  # picks appended, not yet read back
        self._decided: dict[str, int] = {}  # job -> latest attempt whose end is appended
        # Finished jobs are dropped from self.jobs, but a job enqueued with an idempotency
        # key can be enqueued again. The recent ones are remembered here (bounded); older
        # ones are looked up with `known_jobs` (the read model), so a duplicate JobEnqueued
        # is never taken for a new job and run again.
        self._finished_keyed: OrderedDict[str, None] = OrderedDict()
        self.known_jobs: KnownJobs | None = None
        # The jobs reducer; the embedded node shares one with its projector (SharedReductions).
        self.reduce: Reducer = reduce_job
        self._tasks: list[asyncio.Task[Any]] = []
        self._fill_scheduled = False
        self._stopping = False  # no new picks once stop() has begun
        self._starting: set[str] = set()  # picked, to run once the pick is durable (_fill)
        # Jobs pending when their partition was taken over, whose first attempt runs only
        # once its pick is durable (_suspect_first_attempts).
        self._suspects: set[str] = set()
        self._deciding = False  # no picks before start() has folded the log to its end
        self.faults = Faults(clock)  # its appends failing, for /health
        self._later = Later(clock)  # decisions to take again once their append failed
        self._picks_held = False  # a pick's append failed: none until the backoff ends

    # -- start and stop -------------------------------------------------------------------

    def load(
        self, jobs: Iterable[JobState], queues: Mapping[str, QueueState],
        positions: Mapping[int, int],
    ) -> None:
        """Start from a snapshot (unfinished jobs and queue states as of `positions`) instead
        of offset 0: assign() every partition given at construction."""
        self._learn_queues(queues.values())
        self.ownership.load(jobs, positions)

    async def start(self, follow: bool = True) -> None:
        """follow=False: someone else feeds ownership.consume() (a consumer group, Kafka mode)."""
        if follow:
            # Before deciding anything: the snapshot (load) may be behind the log, and
            # picking from it would run jobs the log already shows picked or finished.
            await self.ownership.catch_up()
        started = self.publisher.envelope(
            WorkerStarted(
                worker_id=self.config.worker_id, hostname=socket.gethostname(), pid=os.getpid(),
                concurrency=self.config.concurrency, task_types=sorted(self.app.handlers),
            ),
            self.config.worker_id,
        )
        # This run of the worker is a chain of its own: its start names it (correlation id:
        # its own id), and its heartbeats and its stop cite the start.
        started = replace(started, correlation_id=started.id)
        self.heartbeats.cause = Cause(causation_id=started.id, correlation_id=started.id)
        await self.publisher.publish_envelope(started, WORKERS)
        self._tasks = [
            spawn(self.timers.run(), "dispatcher-timers"),
            spawn(self.heartbeats.run(), "dispatcher-heartbeats"),
        ]
        if follow:
            self._tasks.append(spawn(self.ownership.follow(self.faults, "dispatcher reads"),
                                     "dispatcher-follow"))
        self._deciding = True
        self._schedule_fill()

    def crashed(self) -> list[str]:
        return crashed(self._tasks)

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._later.stop()
        for run in await self.executor.stop(self.config.shutdown_grace_seconds):
            self._hand_back(run)
        worker_id = self.config.worker_id
        self.publisher.publish_then(WorkerStopped(worker_id=worker_id), worker_id, unchecked,
                                    **self.heartbeats.cause)
        await self.publisher.drain()

    def _hand_back(self, run: Running) -> None:
        """An attempt still running when the shutdown grace ran out ends now, retried at
        once: its lease, which nobody renews any more, would keep it from every other
        worker until it expired (fault-injection row R5). Counts as a failed attempt, as
        that expiry would."""
        job_id, attempt = run.job.job_id, run.attempt
        if not self._claim(job_id, attempt):
            return
        job = self.jobs.get(job_id, run.job)
        retry_at = self.clock.now() if self.retries.retry_at(job) is not None else None
        grace = self.config.shutdown_grace_seconds
        self._end_attempt(JobFailed(
            job_id=job_id, attempt=attempt, retry_at=retry_at,
            error=f"{WORKER_STOPPED}: the worker stopped before the attempt ended "
                  f"(shutdown grace {grace:g} s)"),
            attempt, self.worker_actor, attempt_cause(run.ctx))  # it cites its pick

    # -- gaining and losing partitions (the ownership's Decider) --------------------------

    def take(self, snapshot: JobsSnapshot) -> None:
        """Decide for a partition from now on: its jobs enter the ready set and the timers.
        An attempt whose lease the log does not see renewed expires by this owner's clock,
        as after a restart."""
        self._learn_queues(snapshot.queues.values())
        if self.traces is not None:
            self.traces.took(snapshot.traces)
        for job_id in snapshot.finished_keyed:
            self._remember_finished(job_id)
        for job in snapshot.jobs.values():
            self._job_changed(None, job)
        self._suspect_first_attempts(snapshot.jobs.values())
        if self._tasks:
            self._schedule_fill()

    def _suspect_first_attempts(self, jobs: Iterable[JobState]) -> None:
        """A first attempt runs ahead of its pick (_fill), so a job that kills its process
        at once (os.abort()) can die before its pick is durable: the log still shows it
        pending, and the next owner would run it ahead of its pick again, losing the pick
        again (fault-injection row R13). Such a job is among the pending ones a takeover
        finds, at the head of the pick order: the previous owner picked in that order, at
        most max_unread_picks ahead of the log. Those run their first attempt only once
        its pick is durable; jobs enqueued later still run ahead of theirs."""
        waiting = sorted((job for job in jobs if job.status == S.PENDING and job.attempt == 0),
                         key=ready_key)
        self._suspects.update(job.job_id for job in waiting[:self.config.max_unread_picks])

    async def give_up(self, kept: Mapping[int, JobsSnapshot]) -> None:
        """No more picks, expiries or retries for these partitions; returns once everything
        decided so far is durable. Attempts already running here go on and report their
        outcome (the attempt number fences it, should the next owner have decided the
        attempt first), and their heartbeats keep renewing their leases meanwhile."""
        for snapshot in kept.values():
            snapshot.queues = dict(self.queues)
            snapshot.known_finished = self._finished_keyed
        for job_id, job in list(self.jobs.items()):
            if job.partition in kept:
                kept[job.partition].jobs[job_id] = self.jobs.pop(job_id)
                self._suspects.discard(job_id)  # the next owner judges for itself
                if self.traces is not None:  # kept with the job, for when it comes back
                    self.traces.hand_over(job_id, kept[job.partition].traces)
        await self.publisher.drain()
        for snapshot in kept.values():
            for job_id in snapshot.jobs:
                # Picks of ours are durable now: the new owner reads them. A pick we never
                # read back would hold a worker slot for good.
                self._in_flight.discard(job_id)
                if job_id not in self.executor.running:
                    self._decided.pop(job_id, None)

    # -- following the log (the ownership's Decider) -------------------------------------

    async def recall(self, envs: list[Envelope]) -> bool:
        """Mark keyed jobs of this batch that finished before we could remember them.
        True if it had to ask the read model (and so let other tasks run meanwhile)."""
        if self.known_jobs is None:
            return False
        unknown = {
            e.event.job_id for e in envs
            if isinstance(e.event, JobEnqueued) and e.event.idempotency_key is not None
            and e.event.job_id not in self.jobs and e.event.job_id not in self._finished_keyed
        }
        if not unknown:
            return False
        for job_id in await self.known_jobs(unknown):
            self._remember_finished(job_id)
        return True

    def apply(self, envs: list[Envelope]) -> None:
        fold, finished_keyed, reduce = self._fold, self._finished_keyed, self.reduce
        if self.traces is not None:
            self.traces.saw(envs)
        for env in envs:
            fold(env, finished_keyed, reduce)
        self._schedule_fill()

    def _remember_finished(self, job_id: str) -> None:
        self._finished_keyed[job_id] = None
        if len(self._finished_keyed) > FINISHED_KEYED_MEMORY:
            self._finished_keyed.popitem(last=False)

    def _learn_queues(self, states: Iterable[QueueState]) -> None:
        self.queues = merge_queues(self.queues, states)
        self.ready.paused = {q for q, s in self.queues.items() if s.paused}

    def _queue_changed(self, queue: QueueState) -> None:
        (self.ready.paused.add if queue.paused else self.ready.paused.discard)(queue.queue)

    def _job_changed(self, old: JobState | None, new: JobState) -> None:
        """Bring timers, the ready set and running attempts in line with a job's new state."""
        job_id = new.job_id
        self._in_flight.discard(job_id)
        if new.status in TERMINAL:
            self.jobs.pop(job_id, None)
            if new.idempotency_key is not None:
                self._remember_finished(job_id)
            self.executor.cancel(job_id, report=False)  # e.g. it timed out: stop the handler
            self._decided.pop(job_id, None)
            self._suspects.discard(job_id)
            if self.traces is not None:
                self.traces.forget(job_id)
            return
        new = self.jobs[job_id] = detached(new)
        moved = old is None or old.status != new.status or old.attempt != new.attempt
        if new.status == S.PENDING and moved:
            self.ready.push(new)
        elif new.status == S.SCHEDULED and (
            moved or old.run_at != new.run_at  # type: ignore[union-attr]  # moved if old is None
        ):
            assert new.run_at is not None
            self.timers.add(new.run_at, TimerKind.DUE, job_id, new.attempt)
        elif new.status == S.IN_PROGRESS:
            self._watch_attempt(old, new, moved)
        # Also when it moved: a request that landed while a pick or a failed attempt's retry
        # was in flight finds it picked or scheduled again, and must still end it.
        if new.cancel_requested and (old is None or not old.cancel_requested or moved):
            self._cancel(new)

    def _watch_attempt(self, old: JobState | None, new: JobState, moved: bool) -> None:
        assert new.lease_expires_at is not None
        if moved:
            if self.executor.running.get(new.job_id) and not self.executor.is_running(
                new.job_id, new.attempt
            ):
                self.executor.cancel(new.job_id, report=False)  # a superseded attempt of ours
            assert new.run_started_at is not None
            timeout = self.retries.timeout_seconds(new)
            self.timers.add(new.run_started_at + int(timeout * 1000), TimerKind.TIMEOUT,
                            new.job_id, new.attempt)
        if moved or old.lease_expires_at != new.lease_expires_at:  # type: ignore[union-attr]  # moved if old is None
            self.timers.add(new.lease_expires_at, TimerKind.LEASE, new.job_id, new.attempt)

    def _cancel(self, job: JobState) -> None:
        if job.job_id in self.executor.running:
            self.executor.cancel(job.job_id, report=True)  # it reports JobCancelled
        elif job.status in WAITING:
            job_id = job.job_id
            self.publisher.publish_then(JobCancelled(job_id=job_id), job_id,
                                        self._again_if_refused(lambda: self._cancel_again(job_id)),
                                        **cause_of(job))
        elif self._claim(job.job_id, job.attempt):
            self._end_attempt(JobCancelled(job_id=job.job_id, attempt=job.attempt), job.attempt,
                              cause=cause_of(job))

    def _cancel_again(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is not None and job.cancel_requested and job.status in WAITING:
            self._cancel(job)

    # -- picking --------------------------------------------------------------------------

    def _schedule_fill(self) -> None:
        if not self._fill_scheduled:
            self._fill_scheduled = True
            asyncio.get_running_loop().call_soon(self._fill)

    def _fill(self) -> None:
        """Pick ready jobs into free worker slots."""
        self._fill_scheduled = False
        if self._stopping or not self._deciding or self._picks_held:
            # Stopping: a slot freed during the shutdown grace stays free. Not deciding yet:
            # start() is still folding the log past the snapshot. Held: see _hold_picks.
            return
        # A slot is held by a running attempt, not by a pick not yet read back: its handler
        # may be long done (in Kafka mode the read-back comes a fetch later).
        free = min(self.executor.free - len(self._starting),
                   self.config.max_unread_picks - len(self._in_flight))
        now = self.clock.now()
        lease = now + timedelta(seconds=self.config.lease_seconds)
        while free > 0:
            job_id = self.ready.pop()
            if job_id is None:
                break
            job = self.jobs.get(job_id)
            if job is None or job.status != S.PENDING or job_id in self._in_flight:
                continue  # a stale heap entry
            if job.cancel_requested:
                continue
            self._in_flight.add(job_id)
            free -= 1
            attempt = job.attempt + 1
            picked = JobPicked(job_id=job_id, attempt=attempt, worker_id=self.config.worker_id,
                               lease_expires_at=lease)
            if self.traces is not None:
                self.traces.pick(job_id, job.task_type, job.queue, attempt)
            # A first attempt runs now, not once the pick is durable: that saves a commit (an
            # fsync) from every job's enqueue->start. Whatever the handler appends queues
            # behind the pick on the same log, so no outcome is recorded before its pick.
            # Should the process die before the pick is durable, the job is still pending on
            # restart and runs again: at-least-once, as after a crash mid-handler.
            # A later attempt (rare) waits for its pick to be durable: a job that kills its
            # process at once (os.abort()) would otherwise kill worker after worker without
            # one more attempt ever reaching the log, never reaching its dead letter
            # (fault-injection row R13). So does the first attempt of a job pending when
            # its partition was taken over (_suspect_first_attempts).
            durable_first = attempt > 1 or job_id in self._suspects
            if durable_first:
                self._starting.add(job_id)
            started_later: list[str] = []  # the pick's id, for a start once it is durable
            # The ignore: mypy cannot type a lambda whose defaults bind the loop's variables.
            pick_id = self.publisher.publish_then(
                picked, job_id,
                lambda _, error, job=job, attempt=attempt,  # type: ignore[misc]
                later=started_later if durable_first else None:
                self._picked(error, job, attempt, later), **cause_of(job))
            if durable_first:
                started_later.append(pick_id)
            else:
                self.executor.start(job, attempt, pick_id)

    def _picked(self, error: BaseException | None, job: JobState, attempt: int,
                later: list[str] | None = None) -> None:  # fmt: skip
        """The pick's append ended; later: the pick's id, to run the attempt now that it is
        durable. Had it failed, the attempt does not exist: its handler is stopped (or never
        started), any end it reported is forgotten (a stale event, should it be recorded),
        and the job is pending again."""
        job_id = job.job_id
        self._starting.discard(job_id)
        if error is None and later and not self._stopping \
                and self._decided.get(job_id, 0) < attempt:
            self.executor.start(job, attempt, later[0])  # before its pick's span ends
        if self.traces is not None:
            self.traces.picked(job_id, error)
        if error is None:
            self._suspects.discard(job_id)
            self.faults.resumed(APPENDS)
            return
        if self.executor.is_running(job_id, attempt):
            self.executor.cancel(job_id, report=False)
        if self._decided.get(job_id) == attempt:
            del self._decided[job_id]
        self._in_flight.discard(job_id)
        self.ready.push(job)
        self._hold_picks(self._append_failed(error))

    def _hold_picks(self, seconds: float) -> None:
        """No picks for `seconds` after a pick's append failed: picking again at once would
        spin on the log's refusals (a full disk), starting and cancelling handlers."""
        if not self._picks_held:
            self._picks_held = True
            self._later.call(seconds, self._release_picks)

    def _release_picks(self) -> None:
        self._picks_held = False
        self._schedule_fill()

    # -- appends that failed ----------------------------------------------------------------

    def _append_failed(self, error: BaseException) -> float:
        """One of its appends failed: report it; the seconds to wait before trying again."""
        return self.faults.failing(APPENDS, passing_fault(error) or str(error))

    def _again_if_refused(self, again: Callable[[], None]) -> Done:
        """What to tell when an append ends: should it have failed, call `again` once the
        backoff has passed (it checks the job's state then: it may have moved on)."""
        def done(_: Position | None, error: BaseException | None) -> None:
            if error is None:
                self.faults.resumed(APPENDS)
            else:
                self._later.call(self._append_failed(error), again)

        return done

    # -- outcomes -------------------------------------------------------------------------

    def _claim(self, job_id: str, attempt: int) -> bool:
        """True the first time an end of this attempt is decided; False after."""
        if self._decided.get(job_id, 0) >= attempt:
            return False
        self._decided[job_id] = attempt
        return True

    def _end_attempt(self, event: Any, attempt: int, actor: Actor | None = None,
                     cause: Cause = NO_CAUSE) -> None:
        """Append the end of a claimed attempt. Should the append fail, the claim is undone
        and the end appended again after a backoff, so the attempt is decided instead of
        hanging (unless its lease timer decides it first)."""
        job_id = event.job_id
        again = self._again_if_refused(lambda: self._end_again(event, attempt, actor, cause))

        span = self.traces.finish(event, attempt) if self.traces is not None else None

        def check(position: Position | None, error: BaseException | None) -> None:
            if span is not None:
                JobTraces.finished(span, error)
            if error is not None and self._decided.get(job_id) == attempt:
                del self._decided[job_id]
            again(position, error)

        self.publisher.publish_then(event, job_id, check, actor=actor, **cause)

    def _end_again(self, event: Any, attempt: int, actor: Actor | None, cause: Cause) -> None:
        """The end of an attempt whose append failed, unless the attempt is over or another
        end of it was decided meanwhile."""
        job = self.jobs.get(event.job_id)
        if job is not None and job.status == S.IN_PROGRESS and job.attempt == attempt \
                and self._claim(event.job_id, attempt):
            self._end_attempt(event, attempt, actor, cause)

    def _reported(self, run: Running, outcome: Outcome) -> None:
        """A worker slot finished an attempt."""
        self._schedule_fill()
        job_id, attempt = run.job.job_id, run.attempt
        if not self._claim(job_id, attempt):
            return
        actor = self.worker_actor
        progress = run.ctx.progress_now
        # What the attempt reports cites its pick; a stop it was asked for, the request.
        job = self.jobs.get(job_id, run.job)
        cause = attempt_cause(run.ctx)
        match outcome:
            case Succeeded(result=result):
                event: Any = JobSucceeded(job_id=job_id, attempt=attempt, result=result,
                                          progress=progress)
            case Failed(error=error, stack=stack, permanent=permanent):
                retry_at = None if permanent else self.retries.retry_at(job)
                event = JobFailed(job_id=job_id, attempt=attempt, error=error, stack=stack,
                                  retry_at=retry_at, permanent=permanent, progress=progress)
            case Cancelled():
                event = JobCancelled(job_id=job_id, attempt=attempt)
                if job.cancel_requested:
                    cause = cause_of(job)
        self._end_attempt(event, attempt, actor, cause)

    def _emit_log(self, ctx: JobContext, level: LogLevel, message: str,
                  details: dict[str, Any]) -> None:
        job_id = ctx.job_id
        if self.traces is not None:
            self.traces.logged(job_id, ctx.attempt, level, message)
        event = JobLogged(job_id=job_id, attempt=ctx.attempt, level=level, message=message,
                          details=details)
        self.publisher.publish_then(event, job_id, unchecked, actor=self.worker_actor,
                                    **attempt_cause(ctx))
        log_handler_line(job_id, ctx.task_type, ctx.attempt, self.config.worker_id, level,
                         message, details)

    async def _enqueue_child(self, ctx: JobContext, task_type: str, payload: Any,
                             options: dict[str, Any]) -> str:
        """A job a handler enqueues (JobContext.enqueue): in its parent's chain, caused by
        the parent's pick. Appended with the dispatcher's other decisions, so it is in the
        log no later than the parent's outcome."""
        request = task_request(task_type, payload, **options)
        # Traced: in the trace of the attempt whose handler enqueues it (its span is current).
        trace = current_carrier() if self.traces is not None else None
        env = self.producer.envelope(request, self.clock.now(), uuid7(), uuid7(),
                                     self.worker_actor, **attempt_cause(ctx), trace=trace)
        await self.publisher.publish_envelope(env, JOBS)
        return env.key

    # -- timers ---------------------------------------------------------------------------

    def _fire(self, timers: list[Timer], now_ms: int) -> None:
        for _deadline, kind, job_id, attempt in timers:
            job = self.jobs.get(job_id)
            if job is None:
                continue
            if kind is TimerKind.DUE:
                # A second JobDue (from a timer added twice) is harmless: the reducer ignores it.
                if job.status == S.SCHEDULED and job.run_at is not None and job.run_at <= now_ms:
                    self.publisher.publish_then(JobDue(job_id=job_id), job_id,
                                                self._due_again_if_refused(job_id, attempt),
                                                **cause_of(job))
            elif job.status != S.IN_PROGRESS or job.attempt != attempt:
                continue
            elif kind is TimerKind.LEASE:
                if job.lease_expires_at is not None and job.lease_expires_at <= now_ms \
                        and self._claim(job_id, attempt):
                    self.executor.cancel(job_id, report=False)
                    self._end_attempt(
                        JobLeaseExpired(job_id=job_id, attempt=attempt,
                                        retry_at=self.retries.retry_at(job)),
                        attempt, cause=cause_of(job),
                    )
            elif self._claim(job_id, attempt):  # TIMEOUT
                self.executor.cancel(job_id, report=False)
                seconds = self.retries.timeout_seconds(job)
                self._end_attempt(
                    JobFailed(job_id=job_id, attempt=attempt,
                              error=f"TimeoutError: ran past timeout_seconds={seconds:g}",
                              retry_at=self.retries.retry_at(job)),
                    attempt, cause=cause_of(job),
                )

    def _due_again_if_refused(self, job_id: str, attempt: int) -> Done:
        def due_again() -> None:
            self.timers.add(to_ms(self.clock.now()), TimerKind.DUE, job_id, attempt)

        return self._again_if_refused(due_again)
