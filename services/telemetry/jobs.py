"""The spans of one job's life on its partition owner: pick, each attempt, each finish.

The owner learns a job's trace from the `trace` field of its JobEnqueued (or JobRequeued)
envelope, so the spans join the enqueuer's trace whichever process enqueued it; a job
loaded from the read model after a restart brings it from there (JobState.trace). A job
whose enqueue carried no trace context starts a trace of its own at its pick.

    enqueue (the POST server span, a client or producer span, a schedule fire)
    └── jobledger.pick            attempt n: the pick decided, until its append ended
        └── jobledger.attempt     the handler's run (current while the handler runs)
            └── jobledger.finish  the attempt's end decided, until its append ended

Each attempt after the first links to the attempt before it. Ends the owner decides
itself (lease expiry, timeout, cancel, dead letter) are span events, carrying the attempt
number, on the attempt (when it runs here) and on the finish.

With a parent-based sampler (the default), a job whose enqueue was not sampled gets none
of these spans, and its handler runs in no span of ours: the SDK would only have made
non-recording spans of them (docs/performance.md, "Figures behind the code").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode

from jobledger.schemas import (
    Envelope,
    JobCancelled,
    JobEnqueued,
    JobFailed,
    JobLeaseExpired,
    JobRequeued,
    JobSucceeded,
)

from .direct import JobSpan, Sink, remote_parent
from .setup import SCOPE, Telemetry

PICK, ATTEMPT, FINISH = "jobledger.pick", "jobledger.attempt", "jobledger.finish"
TIMEOUT_ERROR = "TimeoutError: ran past timeout_seconds"  # the dispatcher's own timeouts
JOB_ID, TASK_TYPE, QUEUE = "jobledger.job.id", "jobledger.task.type", "jobledger.queue"
ATTEMPT_NO, WORKER, OUTCOME = "jobledger.attempt", "jobledger.worker.id", "jobledger.outcome"


class JobTraces:
    """What a dispatcher (and its executor) tell about the jobs it decides for. Holds one
    trace per unfinished job and one span per pick, attempt and finish in flight. The spans
    are `JobSpan`s (services/telemetry/direct.py), not the SDK's: they cost a few µs each."""

    def __init__(self, telemetry: Telemetry, worker_id: str):
        self.worker_id = worker_id
        self.parent_based = telemetry.parent_based  # a child is kept iff its parent is
        self._sink = Sink(telemetry.tracer_provider, SCOPE)
        self._origins: dict[str, Mapping[str, str]] = {}  # job -> its enqueue's trace field
        self._unsampled: set[str] = set()  # jobs whose trace the sampler drops (_dropped)
        self._picks: dict[str, JobSpan] = {}  # job -> its pick, until the append ended
        self._attempts: dict[str, tuple[int, JobSpan]] = {}  # job -> the attempt running here
        # job -> its latest attempt here and that attempt's span
        self._previous: dict[str, tuple[int, SpanContext]] = {}

    # -- the log ----------------------------------------------------------------------------

    def saw(self, envs: Iterable[Envelope]) -> None:
        """Remember the trace of each job enqueued (or requeued) in a batch of the jobs topic."""
        for env in envs:
            if env.trace and isinstance(env.event, JobEnqueued | JobRequeued):
                job_id = env.event.job_id
                if isinstance(env.event, JobRequeued) or job_id not in self._origins:
                    self._learn(job_id, env.trace)

    def took(self, traces: Mapping[str, Mapping[str, str]]) -> None:
        """The traces of the unfinished jobs of a partition this owner gained."""
        for job_id, carrier in traces.items():
            if job_id not in self._origins:
                self._learn(job_id, carrier)

    def _learn(self, job_id: str, carrier: Mapping[str, str]) -> None:
        """The job's trace; its sampled flag is read once, here (not at each span)."""
        self._origins[job_id] = carrier
        if self.parent_based and not _sampled(carrier):
            self._unsampled.add(job_id)
        else:
            self._unsampled.discard(job_id)

    def _origin(self, job_id: str) -> SpanContext | None:
        carrier = self._origins.get(job_id)
        return remote_parent(carrier) if carrier else None

    def _dropped(self, job_id: str) -> bool:
        """Is the job's trace one the sampler drops (its enqueue was not sampled)?"""
        return job_id in self._unsampled

    def hand_over(self, job_id: str, traces: dict[str, Mapping[str, str]]) -> None:
        """The job's partition is given up: its trace goes into `traces` (the partition's
        kept snapshot) instead of staying here."""
        carrier = self._origins.get(job_id)
        self.forget(job_id)
        if carrier is not None:
            traces[job_id] = carrier

    def forget(self, job_id: str) -> None:
        """The job finished: nothing of it is needed any more."""
        self._origins.pop(job_id, None)
        self._unsampled.discard(job_id)
        self._previous.pop(job_id, None)

    def _span(self, name: str, parent: SpanContext | None, kind: SpanKind,
              attributes: dict[str, Any], links: tuple[Link, ...] = ()) -> JobSpan:
        context = self._sink.child(parent, name, kind, self.parent_based)
        return JobSpan(self._sink, name, context, parent, kind, attributes, links)

    # -- pick -------------------------------------------------------------------------------

    def pick(self, job_id: str, task_type: str, queue: str, attempt: int) -> None:
        if self._dropped(job_id):
            return
        self._picks[job_id] = self._span(
            PICK, self._origin(job_id), SpanKind.INTERNAL,
            {JOB_ID: job_id, TASK_TYPE: task_type, QUEUE: queue, ATTEMPT_NO: attempt,
             WORKER: self.worker_id})

    def picked(self, job_id: str, error: BaseException | None) -> None:
        span = self._picks.pop(job_id, None)
        if span is not None:
            _end(span, error)

    # -- attempts (the executor) --------------------------------------------------------------

    def attempt_started(self, job_id: str, attempt: int) -> Context | None:
        """Start the attempt's span; the context to run its handler in (None: no span,
        the job's trace is not sampled)."""
        if self._dropped(job_id):
            return None
        pick = self._picks.get(job_id)
        parent = pick.get_span_context() if pick else self._origin(job_id)
        previous = self._previous.get(job_id)
        links = (Link(previous[1], {ATTEMPT_NO: previous[0]}),) if previous else ()
        span = self._span(ATTEMPT, parent, SpanKind.CONSUMER, {ATTEMPT_NO: attempt}, links)
        self._attempts[job_id] = (attempt, span)
        self._previous[job_id] = (attempt, span.get_span_context())
        return trace.set_span_in_context(span)

    def attempt_ended(self, job_id: str, attempt: int, error: str | None,
                      outcome: str) -> None:
        running = self._attempts.get(job_id)
        if running is None or running[0] != attempt:
            return
        del self._attempts[job_id]
        span = running[1]
        span.put(OUTCOME, outcome)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()

    def logged(self, job_id: str, attempt: int, level: str, message: str) -> None:
        """A ctx.log line: an event of the attempt's span. At most
        OTEL_SPAN_EVENT_COUNT_LIMIT (128) events are kept per span, the rest counted as
        dropped, as the SDK's spans do."""
        running = self._attempts.get(job_id)
        if running is not None and running[0] == attempt:
            running[1].note(message, {"log.level": level, ATTEMPT_NO: attempt})

    # -- finish -------------------------------------------------------------------------------

    def finish(self, event: Any, attempt: int) -> JobSpan | None:
        """The span of an attempt's end being appended, None if its trace is dropped; end
        it with `finished`."""
        job_id = event.job_id
        if self._dropped(job_id):
            return None
        previous = self._previous.get(job_id)
        running = self._attempts.get(job_id)
        if running is not None and running[0] != attempt:
            running = None
        # Its attempt's span when the attempt ran here (usually ended by now: the handler
        # returned); else, as when another owner's attempt lost its lease, the job's trace.
        under_attempt = previous is not None and previous[0] == attempt
        parent = previous[1] if previous is not None and under_attempt \
            else self._origin(job_id)
        outcome, noted = _outcome(event)
        attributes: dict[str, Any] = {ATTEMPT_NO: attempt, OUTCOME: outcome}
        if not under_attempt:  # not under its attempt: say whose
            attributes[JOB_ID] = job_id
        span = self._span(FINISH, parent, SpanKind.INTERNAL, attributes)
        for name in noted:
            span.note(name, {ATTEMPT_NO: attempt})
            if running is not None:  # cancelled, it has not returned yet
                running[1].note(name, {ATTEMPT_NO: attempt})
        return span

    @staticmethod
    def finished(span: JobSpan, error: BaseException | None) -> None:
        _end(span, error)


def _sampled(carrier: Mapping[str, str]) -> bool:
    """The sampled flag of a traceparent (version 00: 00-<trace>-<span>-<flags>); True
    for one it cannot read, which the SDK then judges when it extracts it."""
    parent = carrier.get("traceparent", "")
    if len(parent) != 55:
        return True
    try:
        return bool(int(parent[53:], 16) & 1)
    except ValueError:
        return True


def _outcome(event: Any) -> tuple[str, list[str]]:
    """The finish's outcome attribute, and the span events it is noted with."""
    match event:
        case JobSucceeded():
            return "completed", []
        case JobCancelled():
            return "cancelled", ["cancelled"]
        case JobLeaseExpired(retry_at=retry_at):
            return _retried(retry_at, ["lease_expired"])
        case JobFailed(permanent=True):
            return "failed", []
        case JobFailed(error=error, retry_at=retry_at):
            return _retried(retry_at, ["timeout"] if error.startswith(TIMEOUT_ERROR) else [])
    return "unknown", []


def _retried(retry_at: object, noted: list[str]) -> tuple[str, list[str]]:
    if retry_at is None:
        return "dead_letter", [*noted, "dead_letter"]
    return "retry", noted


def _end(span: JobSpan, error: BaseException | None) -> None:
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, f"append failed: {error}"))
    span.end()
