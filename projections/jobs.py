"""The jobs reducer: a job's state after one more event. Pure: no clock, no I/O.

The same function runs in the projections (state loaded from SQLite) and in the
dispatcher (state kept in memory), so both see one state machine. Times come from the
events; the attempt number fences out late events of a superseded attempt: such an event
stays in the history and returns the state unchanged.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from datetime import datetime

import msgspec
from msgspec.structs import replace

from jobledger.schemas import (
    Envelope,
    JobCancelled,
    JobCancelRequested,
    JobDue,
    JobEnqueued,
    JobFailed,
    JobHeartbeat,
    JobLeaseExpired,
    JobPicked,
    JobRequeued,
    JobStatus,
    JobSucceeded,
    RunStatus,
)
from jobledger.schemas.common import Progress, to_ms
from jobledger.schemas.lifecycle import TERMINAL, WAITING

S = JobStatus
LEASE_EXPIRED_ERROR = "LeaseExpired: no heartbeat before the lease ran out"


class JobState(msgspec.Struct, frozen=True, gc=False):
    """Everything a job detail needs. Times are Unix milliseconds."""

    job_id: str
    task_type: str
    queue: str
    priority: int
    payload: msgspec.Raw
    status: JobStatus
    created_at: int
    updated_at: int
    run_at: int | None
    timeout_seconds: float | None
    max_retries: int | None
    idempotency_key: str | None
    partition: int
    created_offset: int  # where JobEnqueued sits in its partition: enqueue order
    attempt: int = 0  # the latest attempt picked; 0 before the first pick
    retry_count: int = 0  # failed attempts since enqueue or the last requeue
    worker_id: str | None = None
    lease_expires_at: int | None = None
    started_at: int | None = None  # first pick
    finished_at: int | None = None  # reached a terminal state
    result: msgspec.Raw | None = None
    error: str | None = None
    stack: str | None = None
    cancel_requested: bool = False
    # The latest attempt's run: the runs read model keeps one row per attempt.
    run_status: RunStatus | None = None
    run_started_at: int | None = None
    run_ended_at: int | None = None
    processed: int = 0
    total: int | None = None
    failed: int = 0
    # Causal ids (docs/events.md, "Causal ids"): the chain the job belongs to, and the
    # event that last changed its status or asked to cancel it, which the owner's next
    # decision cites as its cause.
    correlation_id: str | None = None
    cause_id: str | None = None
    # The W3C trace context its enqueue (or latest requeue) carried (packed_trace), so an
    # owner that loads the job from here after a restart puts its spans in that trace.
    trace: str | None = None


def reduce_job(state: JobState | None, env: Envelope) -> JobState | None:
    """The state after env; the same object when env changes nothing."""
    event = env.event
    if isinstance(event, JobEnqueued):
        return state if state is not None else _enqueued(event, env)
    if state is None:
        return None  # an event for a job never enqueued: recorded, ignored
    now = to_ms(env.time)
    match event:
        case JobDue() if state.status == S.SCHEDULED:
            return replace(state, status=S.PENDING, updated_at=now, cause_id=env.id)
        case JobPicked() if state.status == S.PENDING and event.attempt == state.attempt + 1:
            return _picked(state, event, now, env.id)
        case JobHeartbeat() if _current(state, event.attempt):
            return _heartbeat(state, event)
        case JobSucceeded() if _current(state, event.attempt):
            return replace(
                _with_progress(state, event.progress), status=S.COMPLETED, updated_at=now,
                finished_at=now, result=event.result, error=None, stack=None,
                run_status=RunStatus.COMPLETED, run_ended_at=now,
                lease_expires_at=None,  # as on failure and cancel: no lease outlives its run
                cause_id=env.id,
            )
        case JobFailed() if _current(state, event.attempt):
            final = S.FAILED if event.permanent else S.DEAD_LETTER
            return _attempt_failed(_with_progress(state, event.progress), env, event.error,
                                   event.stack, event.retry_at, final)
        case JobLeaseExpired() if _current(state, event.attempt):
            return _attempt_failed(state, env, LEASE_EXPIRED_ERROR, None, event.retry_at,
                                   S.DEAD_LETTER)
        case JobCancelRequested() if state.status not in TERMINAL and not state.cancel_requested:
            return replace(state, cancel_requested=True, updated_at=now, cause_id=env.id)
        case JobCancelled():
            return _cancelled(state, event, now, env.id)
        case JobRequeued() if state.status in TERMINAL:
            return replace(
                state, status=S.PENDING, updated_at=now, run_at=None, retry_count=0,
                finished_at=None, result=None, error=None, stack=None, cancel_requested=False,
                cause_id=env.id, trace=packed_trace(env.trace) or state.trace,
            )
    return state


def revive(event: JobRequeued, env: Envelope) -> JobState:
    """The pending state of a requeued job rebuilt from the event alone (the dispatcher
    forgets finished jobs; the projections keep them and use reduce_job instead)."""
    now = to_ms(env.time)
    return JobState(
        job_id=event.job_id, task_type=event.task_type, queue=event.queue,
        priority=event.priority, payload=event.payload, status=S.PENDING, created_at=now,
        updated_at=now, run_at=None, timeout_seconds=event.timeout_seconds,
        max_retries=event.max_retries, idempotency_key=None, partition=env.partition,
        created_offset=env.offset, attempt=event.attempt,
        correlation_id=env.correlation_id or env.id, cause_id=env.id,
        trace=packed_trace(env.trace),
    )


def _current(state: JobState, attempt: int) -> bool:
    """Does an event quoting this attempt speak for the running attempt?"""
    return state.status == S.IN_PROGRESS and attempt == state.attempt


def initial_status(event: JobEnqueued, env: Envelope) -> JobStatus:
    """Scheduled when run_at is after the enqueue time, else pending."""
    if event.run_at is not None and to_ms(event.run_at) > to_ms(env.time):
        return S.SCHEDULED
    return S.PENDING


def _enqueued(event: JobEnqueued, env: Envelope) -> JobState:
    now = to_ms(env.time)
    run_at = to_ms(event.run_at) if event.run_at is not None else None
    return JobState(
        job_id=event.job_id,
        task_type=event.task_type,
        queue=event.queue,
        priority=event.priority,
        payload=event.payload,
        status=initial_status(event, env),
        created_at=now,
        updated_at=now,
        run_at=run_at,
        timeout_seconds=event.timeout_seconds,
        max_retries=event.max_retries,
        idempotency_key=event.idempotency_key,
        partition=env.partition,
        created_offset=env.offset,
        # An enqueue that names no chain (a plain producer, in-process code) starts its own.
        correlation_id=env.correlation_id or env.id,
        cause_id=env.id,
        trace=packed_trace(env.trace),
    )


def packed_trace(trace: Mapping[str, str] | None) -> str | None:
    """An envelope's `trace` field as one column: the traceparent, then a newline and the
    tracestate if it has one (neither may hold a newline); None without a traceparent."""
    if not trace or "traceparent" not in trace:
        return None
    state = trace.get("tracestate")
    return f"{trace['traceparent']}\n{state}" if state else trace["traceparent"]


def unpacked_trace(packed: str) -> dict[str, str]:
    """The `trace` field packed_trace packed."""
    parent, _, state = packed.partition("\n")
    return {"traceparent": parent, "tracestate": state} if state else {"traceparent": parent}


def _picked(state: JobState, event: JobPicked, now: int, event_id: str) -> JobState:
    return replace(
        state, status=S.IN_PROGRESS, updated_at=now, attempt=event.attempt, cause_id=event_id,
        worker_id=event.worker_id, lease_expires_at=to_ms(event.lease_expires_at),
        started_at=state.started_at if state.started_at is not None else now,
        run_status=RunStatus.RUNNING, run_started_at=now, run_ended_at=None,
        processed=0, total=None, failed=0,
    )


def _heartbeat(state: JobState, event: JobHeartbeat) -> JobState:
    # A heartbeat is not a change of the job a user sees, so updated_at stays.
    state = _with_progress(state, event.progress)
    return replace(state, lease_expires_at=to_ms(event.lease_expires_at))


def _with_progress(state: JobState, progress: Progress | None) -> JobState:
    if progress is None:
        return state
    return replace(
        state, processed=progress.processed, total=progress.total, failed=progress.failed
    )


def _attempt_failed(
    state: JobState, env: Envelope, error: str, stack: str | None, retry_at: datetime | None,
    final: JobStatus,
) -> JobState:
    now = to_ms(env.time)
    common = dict(
        updated_at=now, error=error, stack=stack, retry_count=state.retry_count + 1,
        run_status=RunStatus.FAILED, run_ended_at=now, lease_expires_at=None, cause_id=env.id,
    )
    if retry_at is not None:
        return replace(state, status=S.SCHEDULED, run_at=to_ms(retry_at), **common)
    return replace(state, status=final, finished_at=now, **common)


def _cancelled(state: JobState, event: JobCancelled, now: int, event_id: str) -> JobState:
    if state.status in WAITING and event.attempt is None:
        return replace(state, status=S.CANCELLED, updated_at=now, finished_at=now,
                       cause_id=event_id)
    if event.attempt is not None and _current(state, event.attempt):
        return replace(
            state, status=S.CANCELLED, updated_at=now, finished_at=now,
            run_status=RunStatus.CANCELLED, run_ended_at=now, lease_expires_at=None,
            cause_id=event_id,
        )
    return state


def detached(state: JobState) -> JobState:
    """`state` as kept in memory for long (a pending job may wait hours): a decoded payload
    is a view into its whole encoded record, so a kept state would keep every byte of its
    JobEnqueued alive. The payload is copied out, and the task type and queue, which repeat
    across jobs, interned. A state whose payload is its own already (one derived from a
    detached state, or read from the store) is returned as is: copy() returns the payload."""
    payload = state.payload.copy()
    if payload is state.payload:
        return state
    return replace(state, payload=payload, task_type=sys.intern(state.task_type),
                   queue=sys.intern(state.queue))


Reducer = Callable[[JobState | None, Envelope], JobState | None]


class SharedReductions:
    """reduce_job computed once per event for two folds of the same records in one process:
    the embedded node's dispatcher and projector each fold every record of the jobs topic,
    in the same order, and both read the same decoded envelope objects (Record.decoded).

    The first fold to reach an event computes the state and keeps it; the second takes it
    if it folds from the very state object the first one did (then the result is the same,
    the reducer being pure), and computes it itself otherwise. So an unfinished job's
    state is one object shared by both folds, and the results never depend on which fold
    ran first, nor on whether the other one runs at all. Kept results are detached (as
    both folds keep them), so the shared object is the one both keep."""

    def __init__(self, limit: int = 20_000):
        self.limit = limit  # results kept for the second fold; beyond, forgotten at once
        self._kept: dict[int, tuple[Envelope, JobState | None, JobState | None]] = {}

    def __call__(self, state: JobState | None, env: Envelope) -> JobState | None:
        kept = self._kept.pop(id(env), None)  # the entry holds env: its id is not reused
        if kept is not None:
            if kept[0] is env and kept[1] is state:
                return kept[2]
            return reduce_job(state, env)  # the second fold, from another state: no sharing
        new = reduce_job(state, env)
        if new is not None and new is not state and new.status not in TERMINAL:
            new = detached(new)
        if len(self._kept) >= self.limit:
            self._kept.clear()  # one fold ran far ahead (or alone): stop holding its results
        self._kept[id(env)] = (env, state, new)
        return new
