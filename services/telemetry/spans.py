"""Spans of the pieces other than the jobs' owner: enqueue, schedule fires, projector
batches, Kafka produce and consume (docs/observability.md lists their attributes)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.trace import ProxyTracerProvider, Span, SpanKind, Status, StatusCode, Tracer

from jobledger.schemas.api import TaskRequest

from .context import current_carrier

ENQUEUE, FIRE, PROJECT = "jobledger.enqueue", "jobledger.schedule.fire", "jobledger.project"
PARTITION_ID, KAFKA_OFFSET = "messaging.destination.partition.id", "messaging.kafka.offset"


@contextmanager
def enqueue_span(tracer: Tracer, requests: Sequence[TaskRequest]) -> Iterator[dict[str, str]]:
    """A producer span around an enqueue (a child of the request's server span, the
    client's span, or a root); yields its context for the JobEnqueued envelopes."""
    types = sorted({r.task_type for r in requests})
    attributes: dict[str, str | int] = {
        "messaging.system": "jobledger", "messaging.operation.type": "send",
        "messaging.destination.name": "jobs", "messaging.batch.message_count": len(requests),
        "jobledger.task.type": types[0] if len(types) == 1 else ",".join(types[:8])}
    with tracer.start_as_current_span(ENQUEUE, kind=SpanKind.PRODUCER,
                                      attributes=attributes):
        yield current_carrier()


@contextmanager
def fire_span(tracer: Tracer, schedule_id: str, fire_time_ms: int,
              task_type: str) -> Iterator[dict[str, str]]:
    """The span of one schedule fire; yields its context for the fired JobEnqueued."""
    attributes: dict[str, str | int] = {"jobledger.schedule.id": schedule_id,
                  "jobledger.schedule.fire_time_ms": fire_time_ms,
                  "jobledger.task.type": task_type}
    with tracer.start_as_current_span(FIRE, kind=SpanKind.PRODUCER, attributes=attributes):
        yield current_carrier()


def global_tracer(name: str) -> Tracer | None:
    """The global provider's tracer, None while no SDK is installed (nothing would record:
    the Python client then sends requests as they are)."""
    provider = trace.get_tracer_provider()
    return None if isinstance(provider, ProxyTracerProvider) else provider.get_tracer(name)


@contextmanager
def client_span(tracer: Tracer, method: str,
                url: str) -> Iterator[tuple[Span, dict[str, str]]]:
    """A CLIENT span of one request; yields it and the headers that carry its context."""
    where = urlsplit(url)
    attributes: dict[str, str | int] = {"http.request.method": method, "url.full": url,
                                        "server.address": where.hostname or ""}
    if where.port is not None:
        attributes["server.port"] = where.port
    with tracer.start_as_current_span(method, kind=SpanKind.CLIENT,
                                      attributes=attributes) as span:
        yield span, current_carrier()


def answered(span: Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 400:  # the client's view: any error answer is an error of the call
        span.set_status(Status(StatusCode.ERROR))
        span.set_attribute("error.type", str(status))


def project_span(tracer: Tracer, model: str, events: int, lag_ms: int) -> Span:
    """A projector batch: which read model, how many events, how far behind the newest
    record's append it ran (ms)."""
    return tracer.start_span(PROJECT, kind=SpanKind.CONSUMER, attributes={
        "jobledger.model": model, "messaging.batch.message_count": events,
        "jobledger.projection.lag_ms": lag_ms})


def kafka_span(tracer: Tracer, operation: str, topic: str, partition: int | None,
               offset: int | None, count: int) -> Span:
    """A Kafka produce ("send") or consume ("receive") of `count` records; partition and
    offset are those of the first record, given when the batch has one partition."""
    attributes: dict[str, str | int] = {
        "messaging.system": "kafka", "messaging.operation.type": operation,
        "messaging.operation.name": operation, "messaging.destination.name": topic,
        "messaging.batch.message_count": count}
    if partition is not None:
        attributes[PARTITION_ID] = str(partition)
    if offset is not None:
        attributes[KAFKA_OFFSET] = offset
    kind = SpanKind.PRODUCER if operation == "send" else SpanKind.CONSUMER
    return tracer.start_span(f"{operation} {topic}", kind=kind, attributes=attributes)
