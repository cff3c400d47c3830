"""JSON responses encoded by msgspec, and the one error shape: {"error", "code"}."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from starlette.responses import Response
from starlette.types import Scope, Send

from jobledger.schemas.api import ErrorBody

_encoder = msgspec.json.Encoder()


def valid_utf8(body: bytes) -> bytes:
    """body, with every byte that is not UTF-8 replaced by U+FFFD. msgspec writes a Raw
    value (a payload, a result) as it is, and the log may hold payloads from before the API
    checked them for UTF-8 (docs/reliability.md). In JSON such bytes can only sit inside a
    string, so the answer stays the same JSON, now valid. The usual body is ASCII: one scan."""
    if body.isascii():
        return body
    try:
        body.decode()
    except UnicodeDecodeError:
        return body.decode(errors="replace").encode()
    return body


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return valid_utf8(_encoder.encode(content))


_CONTENT_TYPE = (b"content-type", JSON.media_type.encode())


async def send_json(send: Send, content: Any, status: int = 200, prefix: str = "") -> None:
    """Send what JSON(content, status) sends (the same headers and body) without building
    a Response: for the busiest endpoints, written as plain ASGI handlers. prefix
    "websocket.": as the answer to a WebSocket handshake (ASGI's websocket.http.response)."""
    body = valid_utf8(_encoder.encode(content))
    headers = [(b"content-length", b"%d" % len(body)), _CONTENT_TYPE]
    await send({"type": f"{prefix}http.response.start", "status": status, "headers": headers})
    await send({"type": f"{prefix}http.response.body", "body": body})


class ApiError(Exception):
    """Raised by a handler to answer with an error body and status."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: Mapping[str, str] | None = None, details: Any = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field
        self.headers = headers
        self.details = details

    def body(self) -> ErrorBody:
        return ErrorBody(error=str(self), code=self.code, field=self.field, details=self.details)

    def response(self) -> JSON:
        return JSON(self.body(), self.status, headers=self.headers)


async def send_refusal(scope: Scope, send: Send, error: ApiError) -> None:
    """Answer a request that a middleware refuses before the app sees it: the error as
    JSON, or for a WebSocket the same as the answer to its handshake (ASGI's
    websocket.http.response), else a close before the handshake (a 403)."""
    if scope["type"] == "http":
        await send_json(send, error.body(), error.status)
    elif "websocket.http.response" in scope.get("extensions", {}):
        await send_json(send, error.body(), error.status, prefix="websocket.")
    else:
        await send({"type": "websocket.close", "code": 1008})
