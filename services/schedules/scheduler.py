"""The scheduler: fires the schedules of the partitions it owns, by its clock.

It follows the schedules topic of its partitions (its PartitionOwner, services/runtime/
partition_owner.py, holds them, as the Dispatcher's holds the jobs topic's), keeps every
schedule in memory with the same reducer as the projection, and arms one timer per
schedule at its next fire time. When a timer goes off it decides what is due (misfire
policy, max_instances) and:

1. appends each job as a JobEnqueued whose idempotency key holds the schedule id and the
   fire time, so the job id is derived from them: deciding the same fire time again (after
   a crash, or by a second scheduler) lands on the same job, a duplicate that changes nothing;
2. only once those are durable, appends ScheduleFired for each. A crash between 1 and 2
   leaves the fire time undecided; the next owner decides it again and hits step 1's
   duplicate. ScheduleSkipped records fire times it did not run, and why.

A decision shows in its state only once it is read back from the log. Until then the fire
times it covered are "in flight", and nothing is decided for them twice.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from opentelemetry.trace import Tracer

from jobledger.projections.queries import Queries
from jobledger.projections.schedules import ScheduleState, fire_key, reduce_schedule
from jobledger.projections.triggers import fire_times, jitter_delay, next_fire, zone
from jobledger.schemas import (
    SCHEDULES,
    Actor,
    ActorKind,
    Envelope,
    JobEnqueued,
    ScheduleDefined,
    ScheduleFired,
    ScheduleSkipped,
    ScheduleStatus,
    ScheduleUpdated,
)
from jobledger.schemas.common import from_ms, to_ms
from jobledger.schemas.schedules import MisfirePolicy, ScheduleDefinition, SkipReason
from jobledger.services.log.protocol import LogBackend, Position
from jobledger.services.runtime.clock import Clock
from jobledger.services.runtime.faults import Faults
from jobledger.services.runtime.partition_owner import PartitionOwner
from jobledger.services.runtime.partition_state import SchedulesSnapshot
from jobledger.services.runtime.supervise import crashed, spawn
from jobledger.services.runtime.timers import Timer, TimerKind, Timers
from jobledger.services.telemetry.spans import fire_span
from jobledger.services.write.producer import job_id_for_key
from jobledger.services.write.publisher import Publisher

RETRY_DECISION_MS = 1000  # a fire whose append failed is decided again this much later
DECISION_CHUNK = 500  # schedules whose jobs are handed to the log at a time


@dataclass
class SchedulerConfig:
    scheduler_id: str = "embedded"
    catch_up_limit: int = 1000  # most missed fire times one decision runs (run_all)


@dataclass
class Skip:
    """A run of consecutive fire times that are not run."""

    first: datetime
    last: datetime
    count: int
    reason: SkipReason


@dataclass
class Plan:
    """What one decision does with a schedule's due fire times."""

    run: list[datetime] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)

    @property
    def decided_up_to(self) -> datetime | None:
        times = [*self.run, *(s.last for s in self.skips)]
        return max(times) if times else None


def plan_fires(d: ScheduleDefinition, due: Iterable[datetime], now: datetime, limit: int) -> Plan:
    """Sort the due fire times (ascending, all at or before now) into runs and skips.

    A fire time decided more than misfire_grace_time late is missed: `coalesce` folds the
    missed ones into one run (the on-time run if there is one, else the latest missed one),
    `skip` runs none of them, `run_all` runs each. Only the latest `limit` are looked at;
    older ones are skipped. max_instances is applied afterwards (apply_max_instances)."""
    recent: deque[datetime] = deque(maxlen=limit)
    dropped: Skip | None = None  # the fire times pushed out of `recent`
    for t in due:
        if len(recent) == limit:
            if dropped is None:
                dropped = Skip(recent[0], recent[0], 0, SkipReason.MISFIRE)
            dropped.last, dropped.count = recent[0], dropped.count + 1
        recent.append(t)
    plan = Plan()
    if not recent:
        return plan
    edge = now - timedelta(seconds=d.misfire_grace_time)
    missed = [t for t in recent if t < edge]
    on_time = [t for t in recent if t >= edge]
    coalesce = d.misfire_policy == MisfirePolicy.COALESCE
    if dropped is not None:
        dropped.reason = SkipReason.COALESCED if coalesce else SkipReason.MISFIRE
        plan.skips.append(dropped)
    if coalesce:
        folded = missed if on_time else missed[:-1]
        plan.run = on_time or missed[-1:]
        if folded:
            plan.skips.append(Skip(folded[0], folded[-1], len(folded), SkipReason.COALESCED))
    elif d.misfire_policy == MisfirePolicy.SKIP:
        plan.run = on_time
        if missed:
            plan.skips.append(Skip(missed[0], missed[-1], len(missed), SkipReason.MISFIRE))
    else:
        plan.run = list(recent)
    return plan


def apply_max_instances(plan: Plan, running: int, max_instances: int) -> Plan:
    """With max_instances jobs of the schedule unfinished, this decision's runs are skipped.
    A decision's runs count as one instance (as in APScheduler, where a catch-up of run_all
    is one submission): a run_all catch-up enqueues all of its missed fire times."""
    if not plan.run or running < max_instances:
        return plan
    run = plan.run
    skip = Skip(run[0], run[-1], len(run), SkipReason.MAX_INSTANCES)
    return Plan(run=[], skips=[*plan.skips, skip])


class Scheduler:
    def __init__(
        self, backend: LogBackend, clock: Clock, queries: Queries,
        config: SchedulerConfig | None = None, partitions: Collection[int] | None = None,
        tracer: Tracer | None = None,
    ):
        self.backend = backend
        self.tracer = tracer  # a span per fire, when tracing is on
        self.clock = clock
        self.queries = queries
        self.config = config or SchedulerConfig()
        self.ownership = PartitionOwner(backend.topic(SCHEDULES), self, SchedulesSnapshot,
                                        partitions)
        self.faults = Faults(clock)  # its reads of the log failing, for /health
        # The ownership's own set and dict (never rebound), as the Dispatcher has them.
        self.partitions, self.positions = self.ownership.partitions, self.ownership.positions
        self.schedules: dict[str, ScheduleState] = {}  # every schedule of my partitions
        self.actor = Actor(ActorKind.SCHEDULER, self.config.scheduler_id)
        self.publisher = Publisher(backend, clock, self.actor)
        self.timers = Timers(clock, self._on_timers)
        self._armed: dict[str, int] = {}  # schedule -> the fire time (ms) its timer is set for
        self._in_flight: dict[str, int] = {}  # schedule -> decided up to (ms), not read back
        # Jobs enqueued that the read model may not show yet: job -> (schedule, where its
        # JobEnqueued landed, once durable).
        self._unprojected: dict[str, tuple[str, Position | None]] = {}
        self._due: set[str] = set()
        self._deciding: asyncio.Task[None] | None = None
        self._confirming: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []

    # -- start and stop -------------------------------------------------------------------

    def load(self, states: Iterable[ScheduleState], positions: Mapping[int, int]) -> None:
        """Start from a snapshot (the read model as of `positions`) instead of offset 0:
        assign() every partition given at construction."""
        self.ownership.load(states, positions)

    async def catch_up(self) -> None:
        """Apply the topic up to its current end, so that declare() compares with what is
        on the log now."""
        await self.ownership.catch_up()

    async def declare(self, declared: Mapping[str, ScheduleDefinition]) -> list[Position]:
        """Define code-declared schedules that are missing (or removed), update the ones
        whose definition changed, leave equal ones alone (call after catch_up). Returns
        where the events it appended landed."""
        appends = []
        for schedule_id, definition in declared.items():
            if self.backend.topic(SCHEDULES).partition_for(schedule_id) not in self.partitions:
                continue  # another scheduler owns it and declares it
            state = self.schedules.get(schedule_id)
            if state is None or state.status == ScheduleStatus.REMOVED:
                event: ScheduleDefined | ScheduleUpdated = ScheduleDefined(
                    schedule_id=schedule_id, definition=definition)
            elif state.definition != definition:
                event = ScheduleUpdated(schedule_id=schedule_id, definition=definition)
            else:
                continue
            appends.append(self.publisher.publish(event, schedule_id,
                                                  actor=Actor(ActorKind.CLIENT, "app")))
        return list(await asyncio.gather(*appends))

    async def start(self, follow: bool = True) -> None:
        """follow=False: someone else feeds ownership.consume() (a consumer group, Kafka mode)."""
        for schedule_id in self.schedules:
            self._arm(schedule_id)
        self._tasks = [spawn(self.timers.run(), "scheduler-timers")]
        if follow:
            self._tasks.append(spawn(self.ownership.follow(self.faults, "scheduler reads"),
                                          "scheduler-follow"))

    def crashed(self) -> list[str]:
        return crashed([*self._tasks, *([self._deciding] if self._deciding else [])])

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._deciding is not None:
            await asyncio.gather(self._deciding, return_exceptions=True)
        await asyncio.gather(*self._confirming, return_exceptions=True)
        await self.publisher.drain()

    def busy(self) -> bool:
        """Is a decision, or the confirmation of one, still under way?"""
        deciding = self._deciding is not None and not self._deciding.done()
        return deciding or bool(self._due) or bool(self._confirming)

    async def quiet(self) -> None:
        """Wait until no decision is under way and everything decided is appended."""
        while self.busy():
            if self._deciding is not None and not self._deciding.done():
                await asyncio.gather(self._deciding, return_exceptions=True)
            await asyncio.gather(*self._confirming, return_exceptions=True)
            await asyncio.sleep(0)
        await self.publisher.drain()

    # -- gaining and losing partitions (the ownership's Decider) --------------------------

    def take(self, snapshot: SchedulesSnapshot) -> None:
        """Fire a partition's schedules from now on: they are armed (call declare()
        afterwards for code-declared schedules it should hold)."""
        self.schedules.update(snapshot.schedules)
        if self._tasks:
            for schedule_id in snapshot.schedules:
                self._arm(schedule_id)

    async def give_up(self, kept: Mapping[int, SchedulesSnapshot]) -> None:
        """Stop firing the schedules of these partitions. Returns once the decisions under
        way are durable, so the next owner reads them when it rebuilds and never decides a
        fire time twice."""
        leaving = [s for s, state in self.schedules.items() if state.partition in kept]
        for schedule_id in leaving:
            self._armed.pop(schedule_id, None)  # their timers going off now are ignored
            self._due.discard(schedule_id)
        await self.quiet()
        for schedule_id in leaving:
            state = self.schedules.pop(schedule_id)
            kept[state.partition].schedules[schedule_id] = state
            self._armed.pop(schedule_id, None)  # re-armed by a decision that was under way
            self._in_flight.pop(schedule_id, None)

    # -- following the log (the ownership's Decider) -------------------------------------

    async def recall(self, envs: list[Envelope]) -> bool:
        return False  # a schedule's events are all it needs

    def apply(self, envs: list[Envelope]) -> None:
        for env in envs:
            self._apply(env)

    def _apply(self, env: Envelope) -> None:
        schedule_id = getattr(env.event, "schedule_id", None)
        if schedule_id is None:
            return  # another topic's event written here by mistake
        old = self.schedules.get(schedule_id)
        new = reduce_schedule(old, env)
        if new is old or new is None:
            return
        self.schedules[schedule_id] = new
        if self._in_flight.get(schedule_id, -1) <= new.fire_after:
            self._in_flight.pop(schedule_id, None)
        if isinstance(env.event, ScheduleFired | ScheduleSkipped) and schedule_id in self._armed:
            return  # a decision read back: its timer was set when it was decided
        self._arm(schedule_id)

    # -- timers ---------------------------------------------------------------------------

    def _fire_after(self, state: ScheduleState) -> int:
        return max(state.fire_after, self._in_flight.get(state.schedule_id, state.fire_after))

    def _arm(self, schedule_id: str) -> None:
        """Set the schedule's timer for its next fire time (a timer is only a hint: what is
        due is worked out again when it goes off)."""
        state = self.schedules[schedule_id]
        if state.status != ScheduleStatus.ACTIVE:
            self._armed.pop(schedule_id, None)
            return
        d = state.definition
        found = next_fire(d.trigger, zone(d.timezone), from_ms(self._fire_after(state)),
                          from_ms(state.defined_at))
        if found is None:
            self._armed.pop(schedule_id, None)
            return
        at = to_ms(found)
        if self._armed.get(schedule_id) != at:
            self._armed[schedule_id] = at
            self.timers.add(at, TimerKind.DUE, schedule_id, 0)

    def _on_timers(self, timers: list[Timer], now_ms: int) -> None:
        for deadline, _kind, schedule_id, _ in timers:
            if self._armed.get(schedule_id) == deadline:
                self._due.add(schedule_id)
        if self._due and (self._deciding is None or self._deciding.done()):
            self._deciding = spawn(self._decide_due(), "scheduler-decide")

    # -- deciding -------------------------------------------------------------------------

    async def _decide_due(self) -> None:
        while self._due:
            due, self._due = self._due, set()
            await self.decide(due)

    async def decide(self, schedule_ids: Iterable[str]) -> None:
        """Decide every fire time that is due for these schedules, by the clock now."""
        now = self.clock.now()
        plans: dict[str, tuple[ScheduleState, Plan]] = {}
        considered = [s for s in schedule_ids if s in self.schedules]
        for schedule_id in considered:
            self._armed.pop(schedule_id, None)
            state = self.schedules[schedule_id]
            if state.status != ScheduleStatus.ACTIVE:
                continue
            d = state.definition
            due = fire_times(d.trigger, zone(d.timezone), from_ms(self._fire_after(state)), now,
                             from_ms(state.defined_at))
            plan = plan_fires(d, due, now, self.config.catch_up_limit)
            if plan.run or plan.skips:
                plans[schedule_id] = (state, plan)
        running = await self._running({s for s, (_, p) in plans.items() if p.run},
                                      {s: p for s, (_, p) in plans.items()})
        for schedule_id, (state, plan) in plans.items():
            plan = apply_max_instances(plan, running.get(schedule_id, 0),
                                       state.definition.max_instances)
            plans[schedule_id] = (state, plan)
            self._in_flight[schedule_id] = to_ms(plan.decided_up_to)  # type: ignore[arg-type]  # plans have fires
        for schedule_id in considered:
            self._arm(schedule_id)
        # In chunks, yielding between them: the log commits one chunk while the next is
        # encoded, so the first jobs of a crowd of due schedules do not wait for the last.
        items = list(plans.items())
        for start in range(0, len(items), DECISION_CHUNK):
            if start:
                await asyncio.sleep(0)
            self._publish_chunk(items[start : start + DECISION_CHUNK])

    def _publish_chunk(self, items: list[tuple[str, tuple[ScheduleState, Plan]]]) -> None:
        enqueued: list[tuple[str, datetime, str, asyncio.Future[Position]]] = []
        for schedule_id, (state, plan) in items:
            for skip in plan.skips:
                self._publish_skip(schedule_id, skip)
            for fire_time in plan.run:
                job_id, appended = self._enqueue(state, fire_time)
                enqueued.append((schedule_id, fire_time, job_id, appended))
        if enqueued:
            task = spawn(self._confirm(enqueued), "scheduler-confirm")
            self._confirming.add(task)
            task.add_done_callback(self._confirming.discard)

    def _publish_skip(self, schedule_id: str, skip: Skip) -> None:
        event = ScheduleSkipped(
            schedule_id=schedule_id, fire_time=skip.first, reason=skip.reason, count=skip.count,
            last_fire_time=skip.last if skip.count > 1 else None,
        )
        self.publisher.publish(event, schedule_id)

    def _enqueue(
        self, state: ScheduleState, fire_time: datetime
    ) -> tuple[str, asyncio.Future[Position]]:
        d = state.definition
        key = fire_key(state.schedule_id, to_ms(fire_time))
        job_id = job_id_for_key(key)
        delay = jitter_delay(state.schedule_id, fire_time, d.jitter)
        event = JobEnqueued(
            job_id=job_id, task_type=d.task_type, queue=d.queue, payload=d.payload,
            priority=d.priority, run_at=fire_time + delay if delay else None,
            timeout_seconds=d.timeout_seconds, max_retries=d.max_retries, idempotency_key=key,
        )
        self._unprojected[job_id] = (state.schedule_id, None)
        # The fire's key names the fire: the origin of the job's chain (docs/events.md).
        if self.tracer is None:
            return job_id, self.publisher.publish(event, job_id, causation_id=key,
                                                  correlation_id=key)
        # The fire starts the job's trace: its span's context goes in the JobEnqueued.
        with fire_span(self.tracer, state.schedule_id, to_ms(fire_time), d.task_type) as trace:
            return job_id, self.publisher.publish(event, job_id, causation_id=key,
                                                  correlation_id=key, trace=trace)

    async def _confirm(
        self, enqueued: list[tuple[str, datetime, str, asyncio.Future[Position]]]
    ) -> None:
        """Append ScheduleFired for each job once it is durable; a fire whose job append
        failed is decided again a second later (its key makes a retry safe)."""
        failed: set[str] = set()
        for schedule_id, fire_time, job_id, appended in enqueued:
            try:
                self._unprojected[job_id] = (schedule_id, await appended)
            except Exception:  # the append failed: decide this fire time again
                self._unprojected.pop(job_id, None)
                failed.add(schedule_id)
                continue
            if schedule_id in failed:
                continue  # a later fire of a schedule whose earlier fire is to be retried
            fired = ScheduleFired(schedule_id=schedule_id, fire_time=fire_time, job_id=job_id)
            key = fire_key(schedule_id, to_ms(fire_time))
            self.publisher.publish(fired, schedule_id, causation_id=key,
                                   correlation_id=key).add_done_callback(
                partial(self._retry_if_failed, schedule_id=schedule_id))
        for schedule_id in failed:
            self._retry(schedule_id)

    def _retry_if_failed(self, appended: asyncio.Future[Position], schedule_id: str) -> None:
        if appended.cancelled() or appended.exception() is not None:
            self._retry(schedule_id)

    def _retry(self, schedule_id: str) -> None:
        self._in_flight.pop(schedule_id, None)
        at = self._armed[schedule_id] = to_ms(self.clock.now()) + RETRY_DECISION_MS
        self.timers.add(at, TimerKind.DUE, schedule_id, 0)

    async def _running(self, schedule_ids: set[str], plans: Mapping[str, Plan]) -> dict[str, int]:
        """Unfinished jobs per schedule: as the read model has them, plus jobs this
        scheduler enqueued that the read model does not show yet. A job of a fire time
        being decided again (after a crash) is that fire's own job: it is not counted."""
        if not schedule_ids:
            return {}
        own = {job_id_for_key(fire_key(s, to_ms(t))) for s in schedule_ids for t in plans[s].run}
        # The read model's checkpoint first, then its rows: a job whose JobEnqueued lies
        # below the checkpoint is in those rows (finished or not) and need not be counted here.
        applied = await self.queries.checkpoints("jobs")
        unfinished = await self.queries.unfinished_schedule_jobs()
        for job_id, (schedule_id, at) in list(self._unprojected.items()):
            if at is not None and at[1] < applied.get(at[0], 0):
                del self._unprojected[job_id]
            else:
                unfinished.setdefault(schedule_id, set()).add(job_id)
        return {s: len(unfinished.get(s, set()) - own) for s in schedule_ids}
