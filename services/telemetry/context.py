"""W3C trace context in and out of envelopes, Kafka headers and HTTP headers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACE_HEADERS = ("traceparent", "tracestate")
_propagator = TraceContextTextMapPropagator()


def current_carrier(context: Context | None = None) -> dict[str, str]:
    """The envelope's `trace` field for the current span (or the one in `context`):
    {"traceparent": ..., "tracestate": ...}; empty when there is no valid span."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context)
    return carrier


def context_of(carrier: Mapping[str, str]) -> Context:
    """The context a stored `trace` field (or any header mapping) names; an empty context
    when it names none or a malformed one (the job then starts a trace of its own)."""
    return _propagator.extract(carrier)


def trace_of_headers(headers: Iterable[tuple[str, bytes]]) -> dict[str, str]:
    """traceparent and tracestate of a Kafka record's headers (a kcat or Java producer's),
    as an envelope's `trace` field; empty if it has none."""
    found = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered in TRACE_HEADERS and value is not None:
            found[lowered] = value.decode("latin-1")
    return found
