"""GET /metrics in the Prometheus text format (prometheus_client writes it: the format's
escaping, histogram buckets and content type are its job, not ours).

Gauges that describe the read models (tasks by status and type, pending, workers,
projection lag, records per topic) are read when scraped. Histograms are observed as things
happen: job durations as runs end in this node's projections, HTTP request durations by
the middleware, labelled with the route's path template so ids do not explode the series.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobledger.projections.rows import RUN_ENDED_AT, RUN_STARTED_AT, RUN_STATUS, RUN_TASK_TYPE
from jobledger.schemas import JOBS, LOGS, WORKERS, Permission, RunStatus
from jobledger.schemas.common import to_ms
from jobledger.services.node.base import Node
from jobledger.services.runtime.projector import Projected

from .deps import node
from .openapi import Endpoint, Reply
from .otel_metrics import JOB_BUCKETS, Gauges, OtelMetrics

_TOPICS = (JOBS, LOGS, WORKERS)
# The outcome label of the runs that ended in these statuses (cancelled runs are not timed).
_ENDED = {s: s.value.lower() for s in (RunStatus.COMPLETED, RunStatus.FAILED)}
# Job durations span milliseconds (no-op jobs) to hours (ETL).
_JOB_BUCKETS = JOB_BUCKETS
# A log append: a group commit's fsync (milliseconds) to a Kafka acks=all round trip.
_APPEND_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)


class Metrics:
    """One registry per app, so that apps in one process (tests) do not share series."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.tasks = Gauge("jobledger_tasks", "Tasks by status and type", ["status", "task_type"],
                           registry=r)
        self.pending = Gauge("jobledger_tasks_pending", "Tasks ready to run", registry=r)
        self.workers = Gauge("jobledger_workers_connected", "Workers alive", registry=r)
        self.appended = _AppendedEvents()
        r.register(self.appended)
        self.lag = Gauge("jobledger_projection_lag_seconds",
                         "Age of the oldest record the projections have not applied", registry=r)
        self.job_durations = KeptChildren(Histogram(
            "jobledger_job_duration_seconds", "Duration of runs that ended, by outcome",
            ["task_type", "outcome"], buckets=_JOB_BUCKETS, registry=r))
        self.http_timer = KeptChildren(Histogram(
            "jobledger_http_request_duration_seconds", "HTTP requests by route and status",
            ["method", "route", "status"], registry=r))
        self.append_timer = KeptChildren(Histogram(
            "jobledger_log_append_seconds", "Appends to the log by this node, until durable",
            ["topic"], buckets=_APPEND_BUCKETS, registry=r))
        self.otel: OtelMetrics | None = None  # the same, through OpenTelemetry, when on

    def on_appended(self, topic: str, seconds: float) -> None:
        self.append_timer.observe((topic,), seconds)
        if self.otel is not None:
            self.otel.append_duration.record(seconds, {"topic": topic})

    def on_projected(self, projected: Projected) -> None:
        """Observe the runs a committed batch ended."""
        for row in projected.change.runs.values():
            outcome = _ENDED.get(row[RUN_STATUS])
            started, ended = row[RUN_STARTED_AT], row[RUN_ENDED_AT]
            if outcome is not None and started is not None and ended is not None:
                seconds = (ended - started) / 1000
                self.job_durations.observe((row[RUN_TASK_TYPE], outcome), seconds)
                if self.otel is not None:
                    self.otel.ended(row[RUN_TASK_TYPE], outcome, seconds)

    async def refresh(self, n: Node) -> None:
        """Read the gauges' figures from the node (when scraped, and when exported)."""
        stats = await n.queries.stats(to_ms(n.clock.now()))
        self.tasks.clear()
        for task_type, counts in stats.by_task_type.items():
            for status, count in counts.items():
                self.tasks.labels(status, task_type).set(count)
        self.pending.set(stats.pending_count)
        self.workers.set(stats.worker_count)
        lag = await n.projection_lag_ms() / 1000
        self.lag.set(lag)
        if self.otel is not None:
            self.otel.gauges = Gauges(stats.pending_count, stats.worker_count, lag)
        for topic in _TOPICS:
            ends = await n.backend.topic(topic).end_offsets()
            self.appended.per_topic[topic] = sum(ends.values())


class _AppendedEvents(Collector):
    """Events appended to each topic, by anyone: the log's end offsets, which only grow."""

    def __init__(self) -> None:
        self.per_topic: dict[str, int] = {}

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "jobledger_events_appended", "Events appended to each topic of the log",
            labels=["topic"])
        for topic, count in sorted(self.per_topic.items()):
            family.add_metric([topic], count)
        yield family


async def metrics(request: Request) -> Response:
    m: Metrics = request.app.state.metrics
    await m.refresh(node(request))
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)


class KeptChildren:
    """A labelled histogram that keeps each child it has made: labels() costs a lock and a
    label check, several times the observe itself, and every request and every ended run
    observes one (docs/performance.md, "Figures behind the code")."""

    def __init__(self, histogram: Histogram):
        self.histogram = histogram
        self._children: dict[tuple[object, ...], Histogram] = {}

    def observe(self, labels: tuple[object, ...], value: float) -> None:
        child = self._children.get(labels)
        if child is None:  # prometheus_client makes each label value a str
            child = self._children[labels] = self.histogram.labels(*labels)
        child.observe(value)


class TimingMiddleware:
    """Observes every HTTP request's duration (pure ASGI: no per-request objects)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.timer = metrics.http_timer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route: Any = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.timer.observe((scope["method"], path, status), time.perf_counter() - start)


endpoints = [
    Endpoint(
        "GET", "/metrics", metrics, "Prometheus metrics", tag="system",
        replies={200: Reply("the Prometheus text format", str, CONTENT_TYPE_LATEST)},
        access=Permission.READ_TASKS,
    ),
]
