"""Spans built without the SDK's `Span` machinery: the owner's pick, attempt and finish.

An SDK span (locks, BoundedAttributes validating every attribute, the sampler, the
processor chain's on_start, context lookups) cost about as much as the rest of a no-op
job's path, and a job has three (docs/performance.md, "Figures behind the code"). The
owner knows each of these spans' parent, attributes and times itself, so it records them
in plain fields and hands each, once ended, to the provider's span processors' `on_end`:
a `JobSpan` is an SDK `ReadableSpan`, so exporters (OTLP) take it as they take the SDK's
own (tests/test_tracing.py sends them to a real OTLP receiver).

What differs from an SDK span: the processors get no `on_start` and no `_on_ending` (the
batch and simple processors do nothing there), and a sampler is asked for its decision
only when it is not parent-based (a parent-based one keeps a child exactly when its parent
was kept: the parent's flag decides, as `ParentBased` with its default delegates does).
"""

from __future__ import annotations

import re
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, TraceFlags
from opentelemetry.trace.span import TraceState
from opentelemetry.util import types

from .context import context_of

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})\Z")
_lazy = threading.Lock()  # the first event or handler attribute of a span (rare)


class Sink:
    """Where the spans of one tracer provider go, and what each of them carries."""

    def __init__(self, provider: TracerProvider, scope: str):
        # The processors the SDK's own spans end in (no public accessor: the SDK's tracers
        # take this same attribute).
        self.on_end: Callable[[ReadableSpan], None] = provider._active_span_processor.on_end
        self.resource = provider.resource
        self.scope = InstrumentationScope(scope)  # what provider.get_tracer(scope) carries
        self.limits: SpanLimits = getattr(provider, "_span_limits", None) or SpanLimits()
        self.ids = provider.id_generator
        self.sampler = provider.sampler
        self.random_ids = TraceFlags.RANDOM_TRACE_ID if self.ids.is_trace_id_random() else 0

    def child(self, parent: SpanContext | None, name: str, kind: SpanKind,
              parent_based: bool) -> SpanContext:
        """The context of a new span under `parent` (None: a root), sampled or not."""
        if parent is not None and parent_based:  # the parent decides, at no cost
            return SpanContext(parent.trace_id, self.ids.generate_span_id(), False,
                               parent.trace_flags, parent.trace_state)
        trace_id = parent.trace_id if parent is not None else self.ids.generate_trace_id()
        context = trace.set_span_in_context(NonRecordingSpan(parent)) if parent else None
        decided = self.sampler.should_sample(context, trace_id, name, kind)
        random_ids = (parent.trace_flags & TraceFlags.RANDOM_TRACE_ID if parent is not None
                      else self.random_ids)
        sampled = decided.decision is Decision.RECORD_AND_SAMPLE
        flags = TraceFlags((TraceFlags.SAMPLED if sampled else 0) | random_ids)
        return SpanContext(trace_id, self.ids.generate_span_id(), False, flags,
                           decided.trace_state)


class JobSpan(trace.Span, ReadableSpan):
    """A span of the owner's, recorded in plain fields until it ends; then, when sampled,
    handed to the processors as the `ReadableSpan` it also is (the SDK's spans copy
    themselves into one; this one takes no change once ended). The attempt's is the
    handler's current span, so it takes what a handler does with `trace.get_current_span()`
    as an SDK span would."""

    # ReadableSpan's fields that start the same in every span.
    _instrumentation_info = None
    _events: BoundedList[Event] | tuple[()] = ()
    _status = Status()
    _end_time: int | None = None

    def __init__(self, sink: Sink, name: str, context: SpanContext, parent: SpanContext | None,
                 kind: SpanKind, attributes: dict[str, Any], links: Sequence[Link] = ()):
        self._sink = sink
        self._name = name
        self._context = self._own = context  # _own: ReadableSpan's, typed as never None
        self._parent = parent
        self._kind = kind
        self._attributes: dict[str, Any] | BoundedAttributes = attributes
        self._links = links
        self._resource = sink.resource
        self._instrumentation_scope = sink.scope
        self._start_time = time.time_ns()

    # -- the owner's ---------------------------------------------------------------------------

    def note(self, name: str, attributes: dict[str, Any]) -> None:
        """An event whose attributes the owner made (valid as they are)."""
        self._add(Event(name, attributes))

    def put(self, key: str, value: Any) -> None:
        """An attribute the owner sets (valid as it is)."""
        self._attributes[key] = value

    # -- opentelemetry.trace.Span ----------------------------------------------------------------

    def get_span_context(self) -> SpanContext:
        return self._own

    def is_recording(self) -> bool:
        return self._end_time is None and self._own.trace_flags.sampled

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is not None:
            return
        self._end_time = end_time or time.time_ns()
        if self._own.trace_flags.sampled:
            self._sink.on_end(self)

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if self._end_time is not None:
            return
        if not isinstance(self._attributes, BoundedAttributes):  # a handler's: checked
            limits = self._sink.limits
            with _lazy:
                if not isinstance(self._attributes, BoundedAttributes):
                    self._attributes = BoundedAttributes(
                        limits.max_span_attributes, self._attributes, immutable=False,
                        max_value_len=limits.max_span_attribute_length)
        self._attributes[key] = value

    def add_event(self, name: str, attributes: types.Attributes = None,
                  timestamp: int | None = None) -> None:
        limits = self._sink.limits
        self._add(Event(name, BoundedAttributes(
            limits.max_event_attributes, attributes, immutable=True,
            max_value_len=limits.max_attribute_length), timestamp))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if self._end_time is None and context.is_valid:
            self._links = (*self._links, Link(context, attributes))

    def update_name(self, name: str) -> None:
        if self._end_time is None:
            self._name = name

    def set_status(self, status: Status | Any, description: str | None = None) -> None:
        if self._end_time is not None:
            return
        self._status = status if isinstance(status, Status) else Status(status, description)

    def record_exception(self, exception: BaseException, attributes: types.Attributes = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        kind = type(exception)
        named = kind.__qualname__ if kind.__module__ in (None, "builtins") \
            else f"{kind.__module__}.{kind.__qualname__}"
        noted: dict[str, Any] = {
            "exception.type": named,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped)}
        self.add_event("exception", {**noted, **(attributes or {})}, timestamp)

    def _add(self, event: Event) -> None:
        if self._end_time is not None:
            return
        if not isinstance(self._events, BoundedList):
            with _lazy:
                if not isinstance(self._events, BoundedList):
                    self._events = BoundedList(self._sink.limits.max_events)
        self._events.append(event)


def remote_parent(carrier: Mapping[str, str]) -> SpanContext | None:
    """The span context a stored `trace` field names (None: none, or a malformed one). A
    version-00 traceparent is read here; anything else by the SDK's propagator."""
    found = _TRACEPARENT.match(carrier.get("traceparent", ""))
    if found is None:
        parent = trace.get_current_span(context_of(carrier)).get_span_context()
        return parent if parent.is_valid else None
    trace_id, span_id = int(found[1], 16), int(found[2], 16)
    if not trace_id or not span_id:
        return None
    state = carrier.get("tracestate")
    return SpanContext(trace_id, span_id, True, TraceFlags(int(found[3], 16)),
                       TraceState.from_header([state]) if state else None)
