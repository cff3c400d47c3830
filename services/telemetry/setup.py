"""Turning OpenTelemetry on: which exporter, sampler and resource, from `--otel` and the
standard OTEL_* variables (docs/observability.md).

Off by default. Off means no tracer at all: every part that traces takes a `Telemetry |
None` and does no context work when it is None, so an untraced server pays one `is None`
per place a span would start.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler
from opentelemetry.trace import Tracer

SCOPE = "jobledger"  # the instrumentation scope of every span and instrument
DEFAULT_SERVICE = "jobledger"
PROTOCOLS = ("http/protobuf", "grpc")


class TelemetryError(ValueError):
    """A setting that cannot be used; the message names the variable."""


@dataclass
class Telemetry:
    """The tracer (and meter, when metrics are exported) of one process."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider | None = None
    tracer: Tracer = field(init=False)

    def __post_init__(self) -> None:
        self.tracer = self.tracer_provider.get_tracer(SCOPE)

    @property
    def parent_based(self) -> bool:
        """Does the sampler keep a span exactly when its parent was kept?"""
        return isinstance(self.tracer_provider.sampler, ParentBased)

    @property
    def meter(self) -> Meter | None:
        return self.meter_provider.get_meter(SCOPE) if self.meter_provider else None

    def shutdown(self) -> None:
        """Export what is still buffered, then stop the exporters."""
        self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()


def wanted(flag: bool, env: Mapping[str, str] = os.environ) -> bool:
    """Is telemetry on? With --otel, or with an OTLP endpoint in the environment; never
    with OTEL_SDK_DISABLED=true (the standard switch wins over both)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return flag or bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def protocol(env: Mapping[str, str] = os.environ) -> str:
    """OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL, else
    http/protobuf; TelemetryError for anything else."""
    chosen = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
              or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip()
    if chosen not in PROTOCOLS:
        raise TelemetryError(f"OTEL_EXPORTER_OTLP_PROTOCOL must be one of "
                             f"{', '.join(PROTOCOLS)}, got {chosen!r}")
    return chosen


def resource() -> Resource:
    """OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME (the SDK reads them), with
    service.name jobledger when neither names the service."""
    detected = Resource.create()
    name = detected.attributes.get(SERVICE_NAME)
    if isinstance(name, str) and not name.startswith("unknown_service"):
        return detected
    return detected.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE}))


def build(span_processor: SpanProcessor | None = None,
          metric_reader: MetricReader | None = None, sampler: Sampler | None = None) -> Telemetry:
    """A Telemetry with the given processor and reader, or the OTLP ones the environment
    asks for. The sampler, unless given, is the SDK's: OTEL_TRACES_SAMPLER, parent-based
    always-on by default, so one job's spans are all kept or all dropped."""
    provider = TracerProvider(resource=resource(), sampler=sampler)
    provider.add_span_processor(span_processor or BatchSpanProcessor(_span_exporter()))
    if metric_reader is None and os.environ.get("OTEL_METRICS_EXPORTER", "").strip() == "none":
        return Telemetry(provider)  # traces only
    readers = [metric_reader] if metric_reader is not None else [
        PeriodicExportingMetricReader(_metric_exporter())]
    meters = MeterProvider(resource=provider.resource, metric_readers=readers)
    return Telemetry(provider, meters)


def install(flag: bool) -> Telemetry | None:
    """The process's telemetry, or None when off. Also made the global provider, so that a
    handler's `opentelemetry.trace.get_tracer(...)` spans reach the same exporter."""
    if not wanted(flag):
        return None
    telemetry = build()
    trace.set_tracer_provider(telemetry.tracer_provider)
    return telemetry


def _span_exporter() -> SpanExporter:
    if protocol() == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        return OTLPSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )
    return HttpSpanExporter()


def _metric_exporter() -> MetricExporter:
    if protocol() == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        return OTLPMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetricExporter,
    )
    return HttpMetricExporter()
