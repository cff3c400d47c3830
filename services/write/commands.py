"""The write side every entry point shares (REST, CLI, Python code in-process):
each command validates against the read model, appends events, and says what happened."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Sequence
from typing import NamedTuple

from opentelemetry.trace import Tracer

from jobledger.projections.jobs import JobState, initial_status
from jobledger.projections.queries import Queries
from jobledger.schemas import (
    JOBS,
    Actor,
    Envelope,
    JobCancelRequested,
    JobEnqueued,
    JobRequeued,
    JobStatus,
    QueuePaused,
    QueueResumed,
    encode,
)
from jobledger.schemas.api import TaskRequest
from jobledger.schemas.lifecycle import TERMINAL, WAITING
from jobledger.services.log.protocol import Entry
from jobledger.services.runtime.projector import Projector
from jobledger.services.telemetry.spans import enqueue_span
from jobledger.services.write.producer import Producer
from jobledger.services.write.publisher import Cause, Publisher
from jobledger.services.write.task_types import TaskTypes
from jobledger.services.write.visibility import VisibilityWaiters

S = JobStatus
OUTCOME_WAIT_SECONDS = 5.0  # how long a command waits to see the owner's answer


class NotFound(LookupError):
    pass


class Conflict(RuntimeError):
    """The job is in a state the command does not apply to; the message says which."""


class Enqueued(NamedTuple):
    """(A NamedTuple: a batch enqueue makes 1,000, and a frozen dataclass costs several
    times as much each; docs/performance.md, "Figures behind the code".)"""

    task_id: str
    status: JobStatus
    created: bool  # False: the idempotency key named an existing job


def _initial_status(env: Envelope) -> JobStatus:
    event: JobEnqueued = env.event  # type: ignore[assignment]  # only enqueues come here
    return S.PENDING if event.run_at is None else initial_status(event, env)


def _asked(job: JobState, request_id: str | None) -> Cause:
    """The causal ids of a request about a job: caused by the request, in the job's chain."""
    return Cause(causation_id=request_id, correlation_id=job.correlation_id)


class CancelOutcome(enum.Enum):
    CANCELLED = "cancelled"  # it was waiting and is now cancelled
    REQUESTED = "requested"  # it is running: the handler has been asked to stop


class Commands:
    def __init__(self, publisher: Publisher, producer: Producer, projector: Projector,
                 queries: Queries, task_types: TaskTypes, tracer: Tracer | None = None):
        self.publisher = publisher
        self.tracer = tracer  # None: tracing off
        self.producer = producer
        self.projector = projector
        self.queries = queries
        self.task_types = task_types
        self.visibility = VisibilityWaiters(projector)

    async def enqueue(
        self, requests: Sequence[TaskRequest], actor: Actor | None = None,
        wait_visible: bool = False, batch: bool = False, request_id: str | None = None,
    ) -> list[Enqueued]:
        """Append the jobs once durable. With wait_visible (and always for jobs with an
        idempotency key) also wait until the read model shows them, so that a read right
        after sees them and a known key is told apart from a new one. A task of an unknown
        type refuses them all (UnknownTaskType; with batch, its field is tasks[i].task_type).
        request_id: the request that asked (the jobs' cause and correlation id)."""
        await self.task_types.check(requests, batch)
        if self.tracer is None:
            return await self._enqueue(requests, actor, wait_visible, request_id)
        with enqueue_span(self.tracer, requests) as trace:
            return await self._enqueue(requests, actor, wait_visible, request_id, trace)

    async def _enqueue(
        self, requests: Sequence[TaskRequest], actor: Actor | None, wait_visible: bool,
        request_id: str | None, trace: dict[str, str] | None = None,
    ) -> list[Enqueued]:
        envs = self.producer.envelopes(requests, actor, request_id, trace)
        # Fresh ids: the projector neither decodes their records nor looks them up.
        fresh = [env for env in envs
                 if env.event.idempotency_key is None]  # type: ignore[union-attr]  # enqueues
        self.projector.expect_new(fresh)
        try:
            positions = await self.producer.append(envs)
        except BaseException:
            self.projector.forget_new(fresh)
            raise
        if not wait_visible and len(fresh) == len(envs):
            # A fresh UUIDv7 names no earlier job: each is created, in its initial state.
            return [Enqueued(env.key, _initial_status(env), True) for env in envs]
        out = []
        for env, (partition, offset) in zip(envs, positions, strict=True):
            status = _initial_status(env)
            if env.event.idempotency_key is not None:  # type: ignore[union-attr]  # enqueues
                out.append(await self._keyed(env.key, status, partition, offset))
                continue
            if wait_visible:
                state = await self.visibility.wait(partition, offset, env.key,
                                                   OUTCOME_WAIT_SECONDS)
                status = state.status if state is not None else status
            out.append(Enqueued(env.key, status, True))
        return out

    async def _keyed(self, job_id: str, status: JobStatus, partition: int,
                     offset: int) -> Enqueued:
        """A job enqueued with an idempotency key: created here, or the key's existing job
        (the read model knows which JobEnqueued created it)."""
        await self.visibility.wait(partition, offset, job_id, OUTCOME_WAIT_SECONDS)
        job = await self.queries.job(job_id)
        created = job is None or (job.partition, job.created_offset) == (partition, offset)
        return Enqueued(job_id, job.status if job else status, created)

    async def _job(self, job_id: str) -> JobState:
        job = await self.queries.job(job_id)
        if job is None:
            raise NotFound(f"no task {job_id}")
        return job

    async def cancel(self, job_id: str, actor: Actor | None = None,
                     running_ok: bool = True, request_id: str | None = None) -> CancelOutcome:
        """Cancel a waiting job (at once) or, if running_ok, ask a running one to stop.
        request_id: the request that asked (the cause of the JobCancelRequested)."""
        job = await self._job(job_id)
        if job.status in TERMINAL:
            raise Conflict(f"task {job_id} is already {job.status}")
        if job.status == S.IN_PROGRESS and not running_ok:
            raise Conflict(f"task {job_id} is in progress; use POST .../cancel to stop it")
        settled = self.projector.watch_job(job_id, lambda s: s.status not in WAITING)
        try:
            await self.publisher.publish(JobCancelRequested(job_id=job_id), job_id, actor=actor,
                                         **_asked(job, request_id))
            if job.status == S.IN_PROGRESS:
                return CancelOutcome.REQUESTED
            state = await asyncio.wait_for(asyncio.shield(settled), OUTCOME_WAIT_SECONDS)
        except TimeoutError:
            return CancelOutcome.REQUESTED
        finally:
            settled.cancel()
        if state.status == S.CANCELLED:
            return CancelOutcome.CANCELLED
        if running_ok:
            return CancelOutcome.REQUESTED
        raise Conflict(f"task {job_id} started before the cancel landed; it is {state.status}")

    async def requeue(self, job_id: str, actor: Actor | None = None,
                      request_id: str | None = None) -> JobStatus:
        job = await self._job(job_id)
        if job.status not in TERMINAL:
            raise Conflict(f"task {job_id} is {job.status}; only finished tasks can be requeued")
        event = JobRequeued(
            job_id=job_id, task_type=job.task_type, attempt=job.attempt, queue=job.queue,
            payload=job.payload, priority=job.priority, timeout_seconds=job.timeout_seconds,
            max_retries=job.max_retries,
        )
        partition, offset = await self.publisher.publish(event, job_id, actor=actor,
                                                         **_asked(job, request_id))
        # Read-your-writes: answer once the read model shows the requeue, as enqueue does.
        await self.visibility.wait(partition, offset, job_id, OUTCOME_WAIT_SECONDS)
        return S.PENDING

    async def set_paused(self, queue: str, paused: bool, actor: Actor | None = None,
                         request_id: str | None = None) -> None:
        """Pause or resume a queue: the event goes to every partition, so every owner sees it."""
        event = QueuePaused(queue=queue) if paused else QueueResumed(queue=queue)
        env = self.publisher.envelope(event, queue, actor=actor, causation_id=request_id,
                                      correlation_id=request_id)
        log = self.publisher.backend.topic(JOBS)
        value = encode(env)
        positions = await log.append([Entry(queue, value, p) for p in range(log.partitions)])
        for partition, offset in positions:
            await self.visibility.wait(partition, offset, queue, OUTCOME_WAIT_SECONDS)
