"""The Starlette application. The node (log, projections, dispatcher) lives in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from jobledger.services.node.base import Node
from jobledger.services.runtime.gc_tuning import tune_gc
from jobledger.services.security.bootstrap import SecuritySettings
from jobledger.services.security.setup import Security
from jobledger.services.telemetry.setup import Telemetry

from . import (
    dashboard,
    docs_page,
    keys,
    metrics,
    openapi,
    runs,
    schedules,
    session,
    system,
    tasks,
    users,
    ws,
)
from .auth import RateLimitHeaders, authorize
from .errors import EXCEPTION_HANDLERS
from .headers import HeaderLimits
from .hot import HotRoutes
from .metrics import Metrics, TimingMiddleware
from .openapi import Asgi
from .otel_metrics import OtelMetrics, export_interval, refreshing
from .request_id import RequestIds
from .responses import ApiError
from .tracing import TracingMiddleware
from .ws import Hub, HubConfig
from .ws_wire import Wire

if TYPE_CHECKING:
    import uvicorn

# Every documented endpoint: each module's `endpoints` give its routes and its part of
# /openapi.json (api/openapi.py says how to add one).
ENDPOINTS = [*tasks.endpoints, *runs.endpoints, *system.endpoints, *openapi.endpoints,
             *docs_page.endpoints, *schedules.endpoints, *ws.endpoints, *metrics.endpoints,
             *keys.endpoints, *users.endpoints, *dashboard.endpoints, *session.endpoints]
# Endpoints written as plain ASGI handlers on a fixed path are served by HotRoutes, ahead
# of the rest of the stack (api/hot.py says why), their access check included.
HOT_ROUTES = {(e.method, e.path): served.app for e in ENDPOINTS
              if isinstance(e.handler, Asgi) and "{" not in e.path
              and isinstance(served := e.served(), Asgi)}
(WS_ACCESS,) = [e.access for e in ws.endpoints if e.path == "/ws" and e.access is not None]
POLICY_VIOLATION = 1008  # the close code of a WebSocket without a valid credential


@contextlib.asynccontextmanager
async def serving(app: Starlette, node: Node, hub: HubConfig | None = None) -> AsyncIterator[None]:
    """Serve a started node: what the lifespan does, and what tests use to put a node of
    their own behind the app. Auth (the app's SecuritySettings) starts first: with auth
    on, the first admin key exists before the first request is answered."""
    app.state.node = node
    security: Security = app.state.security
    await security.start(node)
    app.state.hub = Hub(node, hub)
    app.state.hub.start()
    metrics: Metrics = app.state.metrics
    node.projector.listeners.append(metrics.on_projected)
    node.time_appends(metrics.on_appended)
    gauges = _export_metrics(metrics, node, app.state.telemetry)
    try:
        yield
    finally:
        if gauges is not None:
            gauges.cancel()
        node.time_appends(None)
        node.projector.listeners.remove(metrics.on_projected)
        await app.state.hub.stop()
        security.stop(node)


class _WebSocketEndpoint:
    """WS /ws, a plain ASGI app rather than a Starlette endpoint: the hub writes its updates
    through the raw `send` (api/ws_wire.py). With auth on, a socket needs read_tasks, as
    the Authorization header of its upgrade request (non-browser clients) or the
    dashboard's session cookie with this server's Origin (api/cookies.py); without it, the
    socket is accepted and closed at once with 1008 and the reason, before any data."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = WebSocket(scope, receive, send)
        try:
            authorize(scope, WS_ACCESS)
        except ApiError as refused:
            await websocket.accept()
            await websocket.close(POLICY_VIOLATION, str(refused)[:_MAX_CLOSE_REASON])
            return
        await scope["app"].state.hub.serve(websocket, Wire(scope, send))


_MAX_CLOSE_REASON = 120  # a close frame's reason is at most 123 bytes


def create_app(make_node: Callable[[], Node], hub: HubConfig | None = None,
               security: SecuritySettings | None = None,
               telemetry: Telemetry | None = None) -> Starlette:
    """The API over a node that the app starts on startup and stops on shutdown. Auth is
    off unless `security` turns it on; server spans only with `telemetry`."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        node = make_node()
        await node.start()
        try:
            async with serving(app, node, hub):
                yield
        finally:
            await node.stop()

    measured = Metrics()
    settings = security or SecuritySettings()
    limits = [Middleware(RateLimitHeaders)] if settings.enabled and settings.rate_limit else []
    app = Starlette(
        routes=[*openapi.routes_of(ENDPOINTS), WebSocketRoute("/ws", _WebSocketEndpoint())],
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[*_tracing(telemetry), Middleware(HeaderLimits), Middleware(RequestIds),
                    *limits,
                    Middleware(HotRoutes, routes=HOT_ROUTES, metrics=measured),
                    Middleware(TimingMiddleware, metrics=measured)],
    )
    app.state.metrics = measured
    app.state.telemetry = telemetry
    app.state.hub_config = hub or HubConfig()
    app.state.security = Security(settings)
    app.router.redirect_slashes = False  # /api/v1/tasks/ is no endpoint: 404, not a 307
    app.state.openapi = openapi.build_spec(ENDPOINTS)
    return app


def _export_metrics(metrics: Metrics, node: Node,
                    telemetry: Telemetry | None) -> asyncio.Task[None] | None:
    """With telemetry's meter: the instruments of /metrics through OpenTelemetry too, and
    the task that reads their gauges every export interval."""
    meter = telemetry.meter if telemetry is not None else None
    if meter is None:
        return None
    metrics.otel = OtelMetrics(meter)
    return refreshing(lambda: metrics.refresh(node), export_interval())


def _tracing(telemetry: Telemetry | None) -> list[Middleware]:
    if telemetry is None:
        return []
    hot = [path for _, path in HOT_ROUTES]
    return [Middleware(TracingMiddleware, tracer=telemetry.tracer, fixed_routes=hot)]


def run_server(web: Starlette, sock: socket.socket, banner: str) -> None:
    """Serve the app with uvicorn on a bound socket until stopped, as `jobledger serve` and
    `jobledger api` do. The app's lifespan (the node's start) runs first, then the socket
    listens, then the banner is printed to stderr: nothing claims to serve before it does.
    A failed start raises its own exception (a LogError for a locked log, ...) for the CLI to
    report in one line; under uvicorn's lifespan protocol it was logged as a traceback.

    No access log: at log level warning it is never printed, but uvicorn would still format
    each request's line. No permessage-deflate: each connection has its own compressor, so a
    task_update fanned out to many dashboards is deflated once per dashboard, and each
    compressor holds tens of KB; an update is a few hundred bytes (docs/api.md). Both
    figures: docs/performance.md, "Figures behind the code"."""
    from .server import Server

    tune_gc()
    Server(uvicorn_config(web), web, banner).run(sockets=[sock])


def uvicorn_config(web: Starlette, **options: Any) -> uvicorn.Config:
    """How uvicorn serves the app (run_server says why each setting); options add to it (the
    tests' live server turns off pings). Incoming WebSocket messages are capped at the hub's
    max_message_bytes (1009 above it), and api/ws_protocol.py says what its protocol adds."""
    import uvicorn

    from .ws_protocol import WebSocketProtocol

    return uvicorn.Config(web, log_level="warning", access_log=False, lifespan="off",
                          ws=WebSocketProtocol, ws_per_message_deflate=False,
                          ws_max_size=web.state.hub_config.max_message_bytes, **options)
