"""Limits on request headers, checked before any handler reads one: 431 HEADERS_TOO_LARGE.

uvicorn's httptools parser, which `jobledger serve` runs, has no limit of its own on the
size of headers (h11's `h11_max_incomplete_event_size` applies to h11 only), and a 10 MB
X-API-Key-Name used to be stored as the actor of every event it caused. So the app checks
every request, HTTP and WebSocket alike, as the outermost of its middleware: the headers
together, and each header the API takes a value from that may end up in the log.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from jobledger.schemas.api import ErrorBody

from .responses import send_json

# Names and values of all of a request's headers together, in bytes: what Node.js and
# h11 allow (16 KiB); browsers, proxies and clients send well under 8.
MAX_HEADER_BYTES = 16 * 1024
# Headers whose value the API keeps, and the most bytes each may have. X-API-Key-Name is
# the actor of the events a request causes (docs/api.md), as long as a task type may be;
# X-Request-ID their cause (api/request_id.py).
MAX_VALUE_BYTES = {b"x-api-key-name": 200, b"x-request-id": 128}


class HeaderLimits:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            refusal = headers_refusal(scope["headers"])
            if refusal is not None:
                await _refuse(scope, send, refusal)
                return
        await self.app(scope, receive, send)


def headers_refusal(headers: Iterable[tuple[bytes, bytes]]) -> ErrorBody | None:
    """The 431 answer to headers over a limit, naming the header (or "headers" for their
    total); None when they are within every limit."""
    total = 0
    for name, value in headers:
        total += len(name) + len(value)
        most = MAX_VALUE_BYTES.get(name)
        if most is not None and len(value) > most:
            return _too_large(f"the {name.decode()} header is {len(value)} bytes; at most "
                              f"{most} are accepted", name.decode())
    if total > MAX_HEADER_BYTES:
        return _too_large(f"the request's headers are {total} bytes; at most "
                          f"{MAX_HEADER_BYTES} are accepted", "headers")
    return None


def _too_large(message: str, field: str) -> ErrorBody:
    return ErrorBody(error=message, code="HEADERS_TOO_LARGE", field=field)


async def _refuse(scope: Scope, send: Send, body: ErrorBody) -> None:
    if scope["type"] == "http":
        await send_json(send, body, 431)
    elif "websocket.http.response" in scope.get("extensions", {}):
        await send_json(send, body, 431, prefix="websocket.")
    else:
        await send({"type": "websocket.close", "code": 1008})  # a 403 before the handshake
