"""One job's trace in the embedded mode, read from the SDK's in-memory exporter: the POST
server span, the enqueue, then per attempt a pick, the attempt (the handler's span current
inside it) and the finish; the retry's attempt links to the failed one."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import websockets
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, StatusCode

from jobledger.projections.schedules import fire_key
from jobledger.schemas import Actor, ActorKind, Envelope, JobEnqueued, JobStatus
from jobledger.schemas.common import to_ms
from jobledger.services.client.async_client import Client
from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext
from jobledger.services.handlers.demo import demo
from jobledger.services.telemetry.jobs import JobTraces
from jobledger.services.telemetry.setup import TelemetryError, build, protocol, wanted
from jobledger.services.write.producer import job_id_for_key
from tests.support.api_harness import api_client
from tests.support.harness import (
    NodeFactory,
    advance,
    attempt_is,
    clock_of,
    enqueue,
    history,
    settle,
    until_due,
    wait_until,
)
from tests.support.live_server import live_server
from tests.support.otlp import Received, otlp_env, otlp_grpc_receiver, otlp_receiver
from tests.support.procs import ServerProcess, poll
from tests.support.schedules_harness import advance as advance_schedules
from tests.support.schedules_harness import define
from tests.support.tracing import in_memory, named, one, parent_id, span_id, trace_id

S = JobStatus


def _flaky_app(seen: dict[int, Any]) -> App:
    app = App()

    @app.job("flaky")
    async def flaky(ctx: JobContext, payload: Any) -> str:
        seen[ctx.attempt] = trace.get_current_span().get_span_context()
        ctx.log.info(f"attempt {ctx.attempt} starts")
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return "done"

    @app.job("sync_flaky")
    def sync_flaky(ctx: JobContext, payload: Any) -> str:
        seen[ctx.attempt] = (trace.get_current_span().get_span_context(),
                             threading.current_thread().name)
        return "done"

    return app


async def test_one_jobs_tree_from_the_post_to_its_second_attempt(
    make_node: NodeFactory,
) -> None:
    telemetry, exporter, _ = in_memory()
    seen: dict[int, Any] = {}
    node = await make_node(_flaky_app(seen), telemetry=telemetry)
    async with api_client(node) as client:
        answer = await client.post("/api/v1/tasks", json={"task_type": "flaky",
                                                          "max_retries": 1})
        assert answer.status_code == 201
    job_id = answer.json()["task_id"]
    failed = await wait_until(node, job_id, attempt_is(1, S.SCHEDULED))
    await until_due(node, failed)
    await wait_until(node, job_id, S.COMPLETED)
    await settle(node)
    spans = exporter.get_finished_spans()

    server = one(spans, "POST /api/v1/tasks")
    assert server.kind is SpanKind.SERVER
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/api/v1/tasks"
    assert server.attributes["http.request.method"] == "POST"
    assert server.attributes["http.response.status_code"] == 201
    enqueue = one(spans, "jobledger.enqueue")
    assert enqueue.kind is SpanKind.PRODUCER and parent_id(enqueue) == span_id(server)

    picks = [one(spans, "jobledger.pick", attempt=n, id=job_id) for n in (1, 2)]
    attempts = [one(spans, "jobledger.attempt", attempt=n) for n in (1, 2)]
    finishes = [one(spans, "jobledger.finish", attempt=n) for n in (1, 2)]
    for pick, attempt, finish in zip(picks, attempts, finishes, strict=True):
        assert parent_id(pick) == span_id(enqueue)
        assert parent_id(attempt) == span_id(pick)
        assert parent_id(finish) == span_id(attempt)
    assert {trace_id(s) for s in [server, enqueue, *picks, *attempts, *finishes]} == {
        trace_id(server)}

    first, second = attempts
    assert first.status.status_code is StatusCode.ERROR
    assert "first attempt fails" in (first.status.description or "")
    assert second.status.status_code is StatusCode.UNSET
    assert [link.context.span_id for link in second.links] == [span_id(first)]
    assert finishes[0].attributes is not None and finishes[1].attributes is not None
    assert finishes[0].attributes["jobledger.outcome"] == "retry"
    assert finishes[1].attributes["jobledger.outcome"] == "completed"
    # The handler ran inside its attempt's span; its ctx.log line is an event of it.
    assert seen[2].span_id == span_id(second)
    assert [e.name for e in second.events] == ["attempt 2 starts"]


async def test_a_sync_handler_runs_in_its_attempts_span_on_the_thread_pool(
    make_node: NodeFactory,
) -> None:
    telemetry, exporter, _ = in_memory()
    seen: dict[int, Any] = {}
    node = await make_node(_flaky_app(seen), telemetry=telemetry)
    job_id = await enqueue(node, "sync_flaky")
    await wait_until(node, job_id, S.COMPLETED)
    await settle(node)
    context, thread = seen[1]
    assert thread.startswith("jobledger-job")
    attempt = one(exporter.get_finished_spans(), "jobledger.attempt")
    assert context.span_id == span_id(attempt)
    # Enqueued in-process with no span around it: the enqueue span is the trace's root.
    root = one(exporter.get_finished_spans(), "jobledger.enqueue")
    assert root.parent is None and trace_id(root) == trace_id(attempt)


async def test_dead_letter_is_an_event_with_the_attempt(make_node: NodeFactory) -> None:
    telemetry, exporter, _ = in_memory()
    node = await make_node(_ending, telemetry=telemetry)
    job_id = await enqueue(node, "fails", max_retries=0)
    await wait_until(node, job_id, S.DEAD_LETTER)
    await settle(node)
    finish = one(exporter.get_finished_spans(), "jobledger.finish")
    assert [(e.name, dict(e.attributes or {})) for e in finish.events] == [
        ("dead_letter", {"jobledger.attempt": 1})]
    (attempt,) = named(exporter.get_finished_spans(), "jobledger.attempt")
    assert parent_id(finish) == span_id(attempt)


async def test_off_by_default_no_spans_and_no_trace_in_the_envelope(
    make_node: NodeFactory,
) -> None:
    node = await make_node(App())
    assert node.dispatcher is not None and node.dispatcher.traces is None
    assert node.commands.tracer is None


def test_a_served_jobs_spans_reach_an_otlp_receiver_in_one_trace(tmp_path: Path) -> None:
    with otlp_receiver() as (endpoint, received):
        server = ServerProcess(tmp_path / "j.db", "--demo",
                               env=otlp_env(endpoint, "jobledger-test"))
        try:
            server.wait_healthy()
            task = {"task_type": "flaky", "payload": {"fail_times": 1}, "max_retries": 2}
            job_id = server.http.post("/api/v1/tasks", json=task).raise_for_status().json()[
                "task_id"]
            assert poll(lambda: server.finished(job_id), 30)["status"] == "completed"
            ours = poll(lambda: _job_spans(received, job_id, finishes=2), 20)
            poll(lambda: "jobledger.job.outcomes" in received.metrics, 20)
        finally:
            server.stop()
    (post,) = received.named("POST /api/v1/tasks")
    assert {span.trace_id for span in [post, *ours]} == {post.trace_id}
    assert received.services() == {"jobledger-test"}
    assert {"jobledger.queue.depth", "jobledger.job.duration", "jobledger.job.outcomes",
            "jobledger.projection.lag", "jobledger.log.append.duration"} <= received.metrics
    assert sorted(s.name for s in ours) == ["jobledger.attempt"] * 2 + ["jobledger.finish"] * 2 \
        + ["jobledger.pick"] * 2


def _job_spans(received: Received, job_id: str, finishes: int) -> list[Any] | None:
    """The pick, attempt and finish spans of the job (those of its pick's trace), once
    `finishes` finishes arrived."""
    traces = {span.trace_id for span in received.named("jobledger.pick")
              if any(a.key == "jobledger.job.id" and a.value.string_value == job_id
                     for a in span.attributes)}
    mine = [span for name in ("jobledger.pick", "jobledger.attempt", "jobledger.finish")
            for span in received.named(name) if span.trace_id in traces]
    return mine if sum(s.name == "jobledger.finish" for s in mine) >= finishes else None


async def test_a_schedule_fire_starts_its_jobs_trace(make_node: NodeFactory) -> None:
    telemetry, exporter, _ = in_memory()
    node = await make_node(demo, telemetry=telemetry)
    await define(node, id="tick", task_type="echo", trigger="interval", seconds=10)
    await advance_schedules(node, 12)
    job_id = job_id_for_key(fire_key("tick", to_ms(clock_of(node).now()) // 10_000 * 10_000))
    await wait_until(node, job_id, S.COMPLETED)
    await settle(node)
    spans = exporter.get_finished_spans()
    fire = one(spans, "jobledger.schedule.fire", id="tick")
    assert fire.kind is SpanKind.PRODUCER and fire.parent is None
    pick = one(spans, "jobledger.pick", id=job_id)
    assert parent_id(pick) == span_id(fire) and trace_id(pick) == trace_id(fire)


async def test_projector_batches_are_spans_with_model_events_and_lag(
    make_node: NodeFactory,
) -> None:
    telemetry, exporter, _ = in_memory()
    node = await make_node(demo, telemetry=telemetry)
    job_id = await enqueue(node, "echo")
    await wait_until(node, job_id, S.COMPLETED)
    await settle(node)
    batches = named(exporter.get_finished_spans(), "jobledger.project", model="jobs")
    assert batches and all(s.kind is SpanKind.CONSUMER for s in batches)
    assert sum(int((s.attributes or {})["messaging.batch.message_count"])  # type: ignore[arg-type]
               for s in batches) == 3  # enqueued, picked, succeeded
    # By the node's clock, as /metrics' lag (a ManualClock here: only its type is checked).
    assert all(isinstance((s.attributes or {})["jobledger.projection.lag_ms"], int)
               for s in batches)


async def test_the_metrics_of_slash_metrics_through_opentelemetry(
    make_node: NodeFactory,
) -> None:
    telemetry, _, reader = in_memory()
    seen: dict[int, Any] = {}
    node = await make_node(_flaky_app(seen), telemetry=telemetry)
    async with api_client(node) as client:
        answer = await client.post("/api/v1/tasks", json={"task_type": "flaky",
                                                          "max_retries": 1})
        job_id = answer.json()["task_id"]
        failed = await wait_until(node, job_id, attempt_is(1, S.SCHEDULED))
        await until_due(node, failed)
        await wait_until(node, job_id, S.COMPLETED)
        await settle(node)
        points = _points(reader)
        prometheus = (await client.get("/metrics")).text
    assert points["jobledger.job.outcomes"] == {
        (("outcome", "completed"), ("task_type", "flaky")): 1,
        (("outcome", "failed"), ("task_type", "flaky")): 1}
    assert sum(points["jobledger.job.duration"].values()) == 2  # histogram counts
    assert points["jobledger.log.append.duration"][(("topic", "jobs"),)] >= 4
    assert points["jobledger.queue.depth"] == {(): 0}
    assert {"jobledger.workers.connected", "jobledger.projection.lag"} <= set(points)
    # Prometheus has the append latency too.
    assert 'jobledger_log_append_seconds_count{topic="jobs"}' in prometheus


def _points(reader: InMemoryMetricReader) -> dict[str, dict[tuple[tuple[str, Any], ...], Any]]:
    """Each instrument's points: a sum's or gauge's value, a histogram's count, by
    attributes."""
    data = reader.get_metrics_data()
    assert data is not None
    out: dict[str, dict[tuple[tuple[str, Any], ...], Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                out[metric.name] = {
                    tuple(sorted((p.attributes or {}).items())): getattr(p, "value", None)
                    if hasattr(p, "value") else p.count  # type: ignore[attr-defined]
                    for p in metric.data.data_points}
    return out


async def test_a_job_whose_enqueue_was_not_sampled_gets_no_spans(
    make_node: NodeFactory,
) -> None:
    spans = InMemorySpanExporter()
    telemetry = build(SimpleSpanProcessor(spans), InMemoryMetricReader(),
                      ParentBased(TraceIdRatioBased(0)))
    seen: dict[int, Any] = {}
    node = await make_node(_flaky_app(seen), telemetry=telemetry)
    job_id = await enqueue(node, "sync_flaky")
    await wait_until(node, job_id, S.COMPLETED)
    await settle(node)
    (enqueued,) = [e for e in await history(node, job_id) if e.type == "JobEnqueued"]
    flags = int(enqueued.trace["traceparent"][-2:], 16)
    assert flags & 1 == 0  # carried, marked not sampled
    assert named(spans.get_finished_spans(), "jobledger.pick") == []
    assert not seen[1][0].is_valid  # the handler ran in no span of ours


async def test_the_python_clients_span_starts_the_jobs_trace(make_node: NodeFactory) -> None:
    telemetry, exporter, _ = in_memory()
    node = await make_node(demo, telemetry=telemetry)
    async with live_server(node) as base, Client(base, tracer=telemetry.tracer) as client:
        job_id = await client.submit("echo", {"n": 1})
    await wait_until(node, job_id, S.COMPLETED)
    await settle(node)
    spans = exporter.get_finished_spans()
    call = one(spans, "POST")
    server = one(spans, "POST /api/v1/tasks")
    assert call.kind is SpanKind.CLIENT and call.parent is None
    assert call.attributes is not None and call.attributes["http.response.status_code"] == 201
    assert parent_id(server) == span_id(call)
    assert trace_id(one(spans, "jobledger.pick", id=job_id)) == trace_id(call)


async def test_a_websocket_session_is_a_server_span(make_node: NodeFactory) -> None:
    telemetry, exporter, _ = in_memory()
    node = await make_node(demo, telemetry=telemetry)
    async with live_server(node) as base:
        socket = await websockets.connect(base.replace("http", "ws", 1) + "/ws")
        await socket.close()
    session = one(exporter.get_finished_spans(), "WS /ws")
    assert session.kind is SpanKind.SERVER
    assert session.attributes is not None and session.attributes["http.route"] == "/ws"


# Jobs that end the ways the owner decides: failing for good, hanging until stopped.
_ending = App()


@_ending.job("fails")
async def _fails(ctx: JobContext, payload: Any) -> None:
    raise RuntimeError("no")


@_ending.job("hangs")
async def _hangs(ctx: JobContext, payload: Any) -> None:
    await asyncio.Event().wait()


def _events(span: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(e.name, dict(e.attributes or {})) for e in span.events]


async def test_a_timeout_and_a_lease_expiry_are_events_of_the_attempt_and_its_finish(
    make_node: NodeFactory,
) -> None:
    telemetry, exporter, _ = in_memory()
    # No heartbeat before the lease runs out: as if the worker had died.
    node = await make_node(_ending, telemetry=telemetry, lease_seconds=10,
                           heartbeat_seconds=60)
    timed = await enqueue(node, "hangs", timeout_seconds=5, max_retries=0)
    await wait_until(node, timed, S.IN_PROGRESS)
    await advance(node, 6, step=0.5)
    await wait_until(node, timed, S.DEAD_LETTER)
    leased = await enqueue(node, "hangs", max_retries=1)
    await wait_until(node, leased, S.IN_PROGRESS)
    await advance(node, 11, step=0.5)
    await wait_until(node, leased, attempt_is(1, S.SCHEDULED))
    await settle(node)
    spans = exporter.get_finished_spans()
    for job_id, noted, outcome in ((timed, ["timeout", "dead_letter"], "dead_letter"),
                                   (leased, ["lease_expired"], "retry")):
        pick = one(spans, "jobledger.pick", id=job_id)
        (attempt,) = [s for s in named(spans, "jobledger.attempt")
                      if parent_id(s) == span_id(pick)]
        (finish,) = [s for s in named(spans, "jobledger.finish")
                     if parent_id(s) == span_id(attempt)]
        expected = [(name, {"jobledger.attempt": 1}) for name in noted]
        assert _events(finish) == expected and _events(attempt) == expected
        assert finish.attributes is not None and finish.attributes["jobledger.outcome"] == outcome


async def test_a_cancel_of_a_running_job_is_an_event(make_node: NodeFactory) -> None:
    telemetry, exporter, _ = in_memory()
    node = await make_node(_ending, telemetry=telemetry)
    job_id = await enqueue(node, "hangs")
    await wait_until(node, job_id, S.IN_PROGRESS)
    await node.commands.cancel(job_id)
    await wait_until(node, job_id, S.CANCELLED)
    await settle(node)
    finish = one(exporter.get_finished_spans(), "jobledger.finish")
    assert _events(finish) == [("cancelled", {"jobledger.attempt": 1})]
    attempt = one(exporter.get_finished_spans(), "jobledger.attempt")
    assert attempt.attributes is not None and attempt.attributes["jobledger.outcome"] == "cancelled"


def test_spans_go_over_grpc_when_the_protocol_says_so(tmp_path: Path) -> None:
    with otlp_grpc_receiver() as (endpoint, received):
        env = {**otlp_env(endpoint, "over-grpc"), "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
               "OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_METRICS_EXPORTER": "none"}
        server = ServerProcess(tmp_path / "j.db", "--demo", env=env)
        try:
            server.wait_healthy()
            job_id = server.http.post("/api/v1/tasks", json={"task_type": "echo"}).json()[
                "task_id"]
            poll(lambda: server.finished(job_id), 30)
            poll(lambda: _job_spans(received, job_id, finishes=1), 20)
        finally:
            server.stop()
    assert received.services() == {"over-grpc"}


def test_on_with_the_flag_or_an_endpoint_and_off_when_the_sdk_is_disabled() -> None:
    assert not wanted(False, {})
    assert wanted(True, {})
    assert wanted(False, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert wanted(False, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318"})
    assert not wanted(True, {"OTEL_SDK_DISABLED": "TRUE",
                             "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert protocol({}) == "http/protobuf"
    assert protocol({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}) == "grpc"
    with pytest.raises(TelemetryError, match="OTEL_EXPORTER_OTLP_PROTOCOL must be one of "
                       "http/protobuf, grpc, got 'http/json'"):
        protocol({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})


def test_a_given_up_partitions_traces_are_kept_with_its_snapshot() -> None:
    telemetry, exporter, _ = in_memory()
    traces = JobTraces(telemetry, "w1")
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    env = Envelope(id="e1", key="j1", time=datetime.now(UTC), actor=Actor(ActorKind.CLIENT, "t"),
                   event=JobEnqueued(job_id="j1", task_type="noop"),
                   trace={"traceparent": parent})
    traces.saw([env])
    kept: dict[str, Mapping[str, str]] = {}
    traces.hand_over("j1", kept)
    assert kept == {"j1": {"traceparent": parent}}
    traces.pick("j1", "noop", "default", 1)  # no longer held: a trace of its own
    traces.picked("j1", None)
    traces.took(kept)  # the partition came back
    traces.pick("j1", "noop", "default", 2)
    traces.picked("j1", None)
    first, second = named(exporter.get_finished_spans(), "jobledger.pick")
    assert first.parent is None
    assert second.parent is not None and f"{second.parent.span_id:016x}" == parent[36:52]


async def test_a_job_a_handler_enqueues_joins_its_parents_trace(make_node: NodeFactory) -> None:
    telemetry, exporter, _ = in_memory()
    app = App()
    children: list[str] = []

    @app.job("parent")
    async def parent(ctx: JobContext, payload: Any) -> None:
        children.append(await ctx.enqueue("child"))

    @app.job("child")
    def child(ctx: JobContext, payload: Any) -> None:
        return None

    node = await make_node(app, telemetry=telemetry)
    job_id = await enqueue(node, "parent")
    await wait_until(node, job_id, S.COMPLETED)
    await wait_until(node, children[0], S.COMPLETED)
    await settle(node)
    spans = exporter.get_finished_spans()
    parent_pick = one(spans, "jobledger.pick", id=job_id)
    (parent_attempt,) = [s for s in named(spans, "jobledger.attempt")
                         if parent_id(s) == span_id(parent_pick)]
    child_pick = one(spans, "jobledger.pick", id=children[0])
    assert parent_id(child_pick) == span_id(parent_attempt)
    assert trace_id(child_pick) == trace_id(parent_pick)


async def test_a_job_restored_from_the_read_model_keeps_its_trace(
    make_node: NodeFactory,
) -> None:
    """A restart loads unfinished jobs from the read model, past their JobEnqueued: the
    trace context kept there puts the job's spans in its enqueue's trace."""
    telemetry, exporter, _ = in_memory()
    node = await make_node(demo, telemetry=telemetry)
    await node.commands.set_paused("default", True)
    job_id = await enqueue(node, "echo")
    await settle(node)
    await make_node.stop(node)
    node = await make_node(demo, telemetry=telemetry)
    assert node.dispatcher is not None and job_id in node.dispatcher.jobs  # loaded, pending
    await node.commands.set_paused("default", False)
    await wait_until(node, job_id, S.COMPLETED)
    await settle(node)
    spans = exporter.get_finished_spans()
    enqueued = one(spans, "jobledger.enqueue")
    pick = one(spans, "jobledger.pick", id=job_id)
    assert parent_id(pick) == span_id(enqueued) and trace_id(pick) == trace_id(enqueued)
