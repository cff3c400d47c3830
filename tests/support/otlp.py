"""A real OTLP/HTTP receiver on loopback: it decodes the protobuf bodies posted to
/v1/traces and /v1/metrics with opentelemetry-proto's messages and keeps what arrived."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span


@dataclass
class Received:
    """What the receiver got: each span with its resource's service.name, metric names."""

    spans: list[tuple[str, Span]] = field(default_factory=list)
    metrics: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def named(self, name: str) -> list[Span]:
        with self.lock:
            return [span for _, span in self.spans if span.name == name]

    def services(self) -> set[str]:
        with self.lock:
            return {service for service, _ in self.spans}


def _service_of(resource: object) -> str:
    for attribute in resource.attributes:  # type: ignore[attr-defined]
        if attribute.key == "service.name":
            return str(attribute.value.string_value)
    return ""


def _handler(received: Received) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802  (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path == "/v1/traces":
                request = ExportTraceServiceRequest.FromString(body)
                with received.lock:
                    for resource_spans in request.resource_spans:
                        service = _service_of(resource_spans.resource)
                        for scope in resource_spans.scope_spans:
                            received.spans += [(service, s) for s in scope.spans]
            elif self.path == "/v1/metrics":
                metrics = ExportMetricsServiceRequest.FromString(body)
                with received.lock:
                    received.metrics |= {m.name for rm in metrics.resource_metrics
                                         for sm in rm.scope_metrics for m in sm.metrics}
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: the test's output is the spans

    return Handler


@contextmanager
def otlp_receiver() -> Iterator[tuple[str, Received]]:
    """(its endpoint for OTEL_EXPORTER_OTLP_ENDPOINT, what it received)."""
    received = Received()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(received))
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def otlp_env(endpoint: str, service: str) -> dict[str, str]:
    """A serving process's environment for this receiver: spans exported within 100 ms,
    metrics every second."""
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": service,
            "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_METRIC_EXPORT_INTERVAL": "1000"}


@contextmanager
def otlp_grpc_receiver() -> Iterator[tuple[str, Received]]:
    """The same over OTLP/gRPC (traces only): (its endpoint, what it received)."""
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    received = Received()

    class Traces(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: ExportTraceServiceRequest,  # noqa: N802  (the service's name)
                   context: object) -> ExportTraceServiceResponse:
            with received.lock:
                for resource_spans in request.resource_spans:
                    service = _service_of(resource_spans.resource)
                    for scope in resource_spans.scope_spans:
                        received.spans += [(service, s) for s in scope.spans]
            return ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"http://127.0.0.1:{port}", received
    finally:
        server.stop(grace=None)
