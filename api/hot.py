"""The busiest endpoints, served ahead of the timing middleware, Starlette's exception
middleware and its router.

POST /api/v1/tasks is called thousands of times a second by producers, and those layers
(each wrapping `send` in a closure of its own, plus route matching) took about a tenth
of the event loop per request there. This middleware, the outermost of the app's own
after the header limits (api/headers.py), answers the routes given to it directly: it
times them into the same histogram, and turns their errors into answers with the app's
own exception handlers, as the exception middleware would. A bug (an exception no handler
names) is re-raised to Starlette's server-error middleware, which answers 500 and logs
it, as for every other route. Every other request goes on down the stack unchanged. The
routes stay in the router too: that is where /openapi.json and a wrong method's 405 come
from.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from starlette.requests import Request
from starlette.routing import get_route_path  # type: ignore[attr-defined]  # not in its __all__
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import AsgiFunction
from .errors import EXCEPTION_HANDLERS, ExceptionHandler
from .metrics import Metrics


class HotRoutes:
    def __init__(self, app: ASGIApp, routes: Mapping[tuple[str, str], AsgiFunction],
                 metrics: Metrics):
        self.app = app
        self.routes = dict(routes)  # (method, path) -> handler
        self.timer = metrics.http_timer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = get_route_path(scope)
            handler = self.routes.get((scope["method"], path))
            if handler is not None:
                await self._serve(handler, path, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _serve(self, handler: AsgiFunction, path: str, scope: Scope,
                     receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        status = 500
        started = False

        async def send_status(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        try:
            try:
                await handler(scope, receive, send_status)
            except Exception as exc:
                answer = _handler_of(exc)
                if answer is None or started:
                    raise  # a bug: the server-error middleware answers 500 and logs it
                response = await answer(Request(scope, receive), exc)
                await response(scope, receive, send_status)
        finally:
            self.timer.observe((scope["method"], path, status), time.perf_counter() - start)


def _handler_of(exc: Exception) -> ExceptionHandler | None:
    """The app's handler of this exception, as the exception middleware picks it (the
    closest class first); None for the catch-all Exception handler, which is the
    server-error middleware's to run."""
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in EXCEPTION_HANDLERS:
            return EXCEPTION_HANDLERS[cls]
    return None
