"""Reading a JSON request body: the content type first, then at most `limit` bytes.

A body's limit is the smaller of its route's own and the server's --max-body-bytes
(`app.state.max_body_bytes`). A body over it is refused on its Content-Length before any
of it is read (a Content-Length over --max-body-bytes already by api/guard.py, on every
route), and a body without one (chunked) is read only until it passes the limit, so an
oversized upload never sits in memory whole.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive, Scope

from .responses import ApiError

JSON_MEDIA_TYPE = "application/json"


def require_json(sent: str | None) -> None:
    """415 unless the Content-Type sent is application/json (parameters such as charset allowed)."""
    if sent is None:
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE",
                       f"Content-Type is missing; send {JSON_MEDIA_TYPE}", "content-type")
    if sent.split(";", 1)[0].strip().lower() != JSON_MEDIA_TYPE:
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE",
                       f"Content-Type is {sent!r}; send {JSON_MEDIA_TYPE}", "content-type")


def body_headers(scope: Scope) -> tuple[str | None, str]:
    """The Content-Type (None if absent) and Content-Length ("" if absent) of a request,
    in one pass over its headers (the first of a repeated one, as Starlette's Headers)."""
    sent: str | None = None
    declared: str | None = None
    for name, value in scope["headers"]:
        if name == b"content-type" and sent is None:
            sent = value.decode("latin-1")
        elif name == b"content-length" and declared is None:
            declared = value.decode("latin-1")
    return sent, declared or ""


async def receive_json(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The body of a request that must carry JSON, at most `limit` bytes (413 beyond),
    read straight from the ASGI channel: the busiest endpoints build no Request."""
    sent, declared = body_headers(scope)
    require_json(sent)
    limit = min(limit, scope["app"].state.max_body_bytes)
    if declared.isdigit() and int(declared) > limit:
        raise body_too_large(f"the body is {declared} bytes; at most {limit} are accepted here")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise body_too_large(f"the body is over {limit} bytes, the most accepted here")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_json(request: Request, limit: int) -> bytes:
    """receive_json for a handler that has a Request."""
    return await receive_json(request.scope, request.receive, limit)


def body_too_large(message: str) -> ApiError:
    return ApiError(413, "PAYLOAD_TOO_LARGE", message, "body")
