"""Telemetry for tests: the SDK's in-memory span exporter and metric reader, and lookups of
finished spans by name and attributes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from jobledger.services.telemetry.setup import Telemetry, build


def in_memory() -> tuple[Telemetry, InMemorySpanExporter, InMemoryMetricReader]:
    """A Telemetry whose spans end up in the returned exporter (exported as each ends)."""
    spans = InMemorySpanExporter()
    metrics = InMemoryMetricReader()
    return build(SimpleSpanProcessor(spans), metrics), spans, metrics


def named(spans: Sequence[ReadableSpan], name: str, **attributes: Any) -> list[ReadableSpan]:
    """The spans of this name whose attributes include these (jobledger.attempt=1 is
    written attempt=1: the keyword is the attribute's last dotted part)."""
    def matches(span: ReadableSpan) -> bool:
        attrs = span.attributes or {}
        return all(any(k.rsplit(".", 1)[-1] == key and v == want for k, v in attrs.items())
                   for key, want in attributes.items())

    return [s for s in spans if s.name == name and matches(s)]


def one(spans: Sequence[ReadableSpan], name: str, **attributes: Any) -> ReadableSpan:
    found = named(spans, name, **attributes)
    assert len(found) == 1, (f"{len(found)} spans {name} {attributes}; have "
                             f"{[(s.name, dict(s.attributes or {})) for s in spans]}")
    return found[0]


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id
