"""Reading a JSON request body: the content type first, then at most `limit` bytes.

A body over its limit is refused on its Content-Length before any of it is read, and a
body without one (chunked) is read only until it passes the limit, so an oversized upload
never sits in memory whole.
"""

from __future__ import annotations

from starlette.requests import Request

from .responses import ApiError

JSON_MEDIA_TYPE = "application/json"


def require_json(request: Request) -> None:
    """415 unless the Content-Type is application/json (parameters such as charset allowed)."""
    sent = request.headers.get("content-type")
    if sent is None:
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE",
                       f"Content-Type is missing; send {JSON_MEDIA_TYPE}", "content-type")
    if sent.split(";", 1)[0].strip().lower() != JSON_MEDIA_TYPE:
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE",
                       f"Content-Type is {sent!r}; send {JSON_MEDIA_TYPE}", "content-type")


async def read_json(request: Request, limit: int) -> bytes:
    """The body of a request that must carry JSON, at most `limit` bytes (413 beyond)."""
    require_json(request)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(f"the body is {declared} bytes; at most {limit} are accepted here")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(f"the body is over {limit} bytes, the most accepted here")
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(message: str) -> ApiError:
    return ApiError(413, "PAYLOAD_TOO_LARGE", message, "body")
