"""HTTP server spans for every route and a span per WebSocket session, with the HTTP
semantic conventions' attributes. Added only when tracing is on (create_app), as the
outermost middleware, so that a request refused by an inner layer is traced too.

Written here rather than taken from opentelemetry-instrumentation-asgi: that package would
be one more dependency for about sixty lines, and it wraps `send` and `receive` in spans
of their own (several per request) that nobody reading a job's trace needs.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from starlette.routing import get_route_path  # type: ignore[attr-defined]  # not in its __all__
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobledger.services.telemetry.context import context_of


class TracingMiddleware:
    def __init__(self, app: ASGIApp, tracer: Tracer, fixed_routes: Collection[str] = ()):
        self.app = app
        self.tracer = tracer
        # Paths that are their own route template (HotRoutes serves them without routing).
        self.fixed_routes = frozenset(fixed_routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET") if kind == "http" else "WS"
        parent = context_of(_trace_headers(scope))
        with self.tracer.start_as_current_span(
            method, parent, SpanKind.SERVER, attributes=_request_attributes(scope),
            record_exception=True, set_status_on_exception=True,
        ) as span:
            status = 500 if kind == "http" else None

            async def send_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                elif message["type"] == "websocket.close":
                    span.set_attribute("websocket.close.code", message.get("code", 1000))
                await send(message)

            try:
                await self.app(scope, receive, send_status)
            finally:
                self._name(span, method, scope)
                if status is not None:
                    _set_status(span, status)

    def _name(self, span: Span, method: str, scope: Scope) -> None:
        """`POST /api/v1/tasks/{task_id}`: the route template, so ids do not make every
        span name unique; the method alone when no route matched."""
        route: Any = scope.get("route")
        template = getattr(route, "path", None)
        if template is None and get_route_path(scope) in self.fixed_routes:
            template = get_route_path(scope)
        if template is not None:
            span.set_attribute("http.route", template)
            span.update_name(f"{method} {template}")


def _trace_headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"] if name in (b"traceparent", b"tracestate")}


def _request_attributes(scope: Scope) -> dict[str, str | int]:
    attributes: dict[str, str | int] = {
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
        "network.protocol.version": scope.get("http_version", "1.1"),
    }
    if scope["type"] == "http":
        attributes["http.request.method"] = scope["method"]
    server, client = scope.get("server"), scope.get("client")
    if server:
        attributes["server.address"], attributes["server.port"] = server[0], server[1]
    if client:
        attributes["client.address"], attributes["client.port"] = client[0], client[1]
    for name, value in scope["headers"]:
        if name == b"user-agent":
            attributes["user_agent.original"] = value.decode("latin-1")
    return attributes


def _set_status(span: Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:  # a 4xx is the client's error, not the server span's (semconv)
        span.set_status(Status(StatusCode.ERROR))
        span.set_attribute("error.type", str(status))
