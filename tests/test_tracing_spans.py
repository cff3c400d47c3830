"""The owner's own spans (services/telemetry/direct.py): built without the SDK's Span, they
still take what a handler does with its current span, nest the handler's own spans, keep
the SDK's event limit, and follow a sampler that is not parent-based. And the trace a job
keeps in the read model (JobState.trace), for an owner that loads it after a restart."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from msgspec.structs import replace
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import StatusCode

from jobledger.projections.jobs import packed_trace, reduce_job, unpacked_trace
from jobledger.schemas import (
    Actor,
    ActorKind,
    Envelope,
    JobEnqueued,
    JobRequeued,
    JobStatus,
    JobSucceeded,
)
from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext
from jobledger.services.telemetry.direct import remote_parent
from jobledger.services.telemetry.jobs import JobTraces
from jobledger.services.telemetry.setup import Telemetry
from tests.support.builders import envelope
from tests.support.harness import NodeFactory, enqueue, settle, wait_until
from tests.support.tracing import in_memory, one, parent_id, span_id, trace_id

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_a_handlers_attributes_events_and_spans_join_its_attempt(
    make_node: NodeFactory,
) -> None:
    telemetry, exporter, _ = in_memory()
    app = App()

    @app.job("charge")
    async def charge(ctx: JobContext, payload: Any) -> None:
        attempt = trace.get_current_span()
        assert attempt.is_recording()
        attempt.set_attribute("order.id", "o-1")
        attempt.add_event("charged", {"amount": 3})
        with telemetry.tracer.start_as_current_span("card.call"):
            pass
        try:
            raise ValueError("declined once")
        except ValueError as error:
            attempt.record_exception(error)

    node = await make_node(app, telemetry=telemetry)
    job_id = await enqueue(node, "charge")
    await wait_until(node, job_id, JobStatus.COMPLETED)
    await settle(node)
    spans = exporter.get_finished_spans()
    attempt = one(spans, "jobledger.attempt")
    assert attempt.attributes is not None and attempt.attributes["order.id"] == "o-1"
    assert attempt.attributes["jobledger.outcome"] == "succeeded"
    assert [(e.name, dict(e.attributes or {})) for e in attempt.events][0] == (
        "charged", {"amount": 3})
    (exception,) = [e for e in attempt.events if e.name == "exception"]
    assert exception.attributes is not None
    assert exception.attributes["exception.type"] == "ValueError"
    call = one(spans, "card.call")
    assert parent_id(call) == span_id(attempt) and trace_id(call) == trace_id(attempt)
    assert attempt.instrumentation_scope is not None
    assert attempt.instrumentation_scope.name == "jobledger"
    assert attempt.resource.attributes["service.name"] == "jobledger"


def _traces(limits: SpanLimits | None = None, sampler: Any = None) -> tuple[
        JobTraces, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler, span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return JobTraces(Telemetry(provider), "w1"), exporter


def _enqueued(traces: JobTraces, job_id: str, parent: str | None) -> None:
    traces.saw([Envelope(id="e1", key=job_id, time=datetime.now(UTC),
                         actor=Actor(ActorKind.CLIENT, "t"),
                         event=JobEnqueued(job_id=job_id, task_type="noop"),
                         trace={"traceparent": parent} if parent else None)])


def test_ctx_log_lines_past_the_event_limit_are_counted_as_dropped() -> None:
    traces, exporter = _traces(SpanLimits(max_events=2))
    _enqueued(traces, "j1", PARENT)
    traces.pick("j1", "noop", "default", 1)
    traces.attempt_started("j1", 1)
    for n in range(3):
        traces.logged("j1", 1, "info", f"line {n}")
    traces.attempt_ended("j1", 1, "RuntimeError: no", "failed")
    attempt = one(exporter.get_finished_spans(), "jobledger.attempt")
    assert [e.name for e in attempt.events] == ["line 1", "line 2"]  # the SDK keeps the last
    assert attempt.dropped_events == 1
    assert attempt.status.status_code is StatusCode.ERROR


def test_a_sampler_that_is_not_parent_based_is_asked_and_a_root_starts_a_trace() -> None:
    traces, exporter = _traces(sampler=ALWAYS_ON)
    _enqueued(traces, "j1", None)  # no trace context: its pick is a root
    traces.pick("j1", "noop", "default", 1)
    traces.attempt_started("j1", 1)
    traces.picked("j1", None)
    traces.attempt_ended("j1", 1, None, "succeeded")
    finish = traces.finish(JobSucceeded(job_id="j1", attempt=1), 1)
    assert finish is not None
    traces.finished(finish, None)
    spans = exporter.get_finished_spans()
    pick, attempt, end = (one(spans, name) for name in (
        "jobledger.pick", "jobledger.attempt", "jobledger.finish"))
    assert pick.parent is None and parent_id(attempt) == span_id(pick)
    assert parent_id(end) == span_id(attempt)
    assert trace_id(pick) == trace_id(attempt) == trace_id(end) != 0


def test_a_traceparent_is_read_as_the_sdks_propagator_reads_it() -> None:
    parent = remote_parent({"traceparent": PARENT, "tracestate": "a=1,b=2"})
    assert parent is not None and parent.is_remote and parent.trace_flags.sampled
    assert f"{parent.trace_id:032x}" == PARENT[3:35]
    assert dict(parent.trace_state) == {"a": "1", "b": "2"}
    assert remote_parent({"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}) is None
    assert remote_parent({"traceparent": "garbage"}) is None
    future = remote_parent({"traceparent": "01-" + PARENT[3:] + "-extra"})  # a later version
    assert future is not None and f"{future.span_id:016x}" == PARENT[36:52]


def test_a_trace_field_packs_into_one_column_and_back() -> None:
    both = {"traceparent": PARENT, "tracestate": "a=1,b=2"}
    assert unpacked_trace(packed_trace(both) or "") == both
    assert unpacked_trace(packed_trace({"traceparent": PARENT}) or "") == {"traceparent": PARENT}
    assert packed_trace({"tracestate": "a=1"}) is None and packed_trace(None) is None


def test_the_jobs_reducer_keeps_the_enqueues_trace_and_a_requeues_newer_one() -> None:
    other = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"

    def traced(event: Any, parent: str | None) -> Envelope:
        return replace(envelope(event), trace={"traceparent": parent} if parent else {})

    state = reduce_job(None, traced(JobEnqueued(job_id="j1", task_type="t"), PARENT))
    assert state is not None and state.trace == PARENT
    done = replace(state, status=JobStatus.FAILED)
    again = reduce_job(done, traced(JobRequeued(job_id="j1", task_type="t", attempt=1), other))
    assert again is not None and again.trace == other
    kept = reduce_job(done, traced(JobRequeued(job_id="j1", task_type="t", attempt=1), None))
    assert kept is not None and kept.trace == PARENT
