"""Request ids: every HTTP request gets one, and the events it appends cite it.

A request that sends `X-Request-ID` (1 to 128 printable ASCII characters, no spaces; the
length is checked with the other headers, api/headers.py) keeps its own, so a proxy's or a
client's id follows the request into the log; any other gets a fresh UUIDv7. Either way the
response echoes it in `X-Request-ID`. The events the request appends carry it as their
causation id, and the jobs it enqueues as their correlation id (docs/events.md).
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobledger.schemas import uuid7
from jobledger.schemas.api import ErrorBody

from .responses import send_json

HEADER = b"x-request-id"
SCOPE_KEY = "jobledger.request_id"
_VALID = re.compile(rb"[!-~]+")  # printable ASCII, no spaces


class RequestIds:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for n, v in scope["headers"] if n == HEADER), None)
        if given is not None and not _VALID.fullmatch(given):
            body = ErrorBody(error="the X-Request-ID header must be printable ASCII without "
                             "spaces", code="INVALID_ARGUMENT", field="X-Request-ID")
            await send_json(send, body, 400)
            return
        request_id = given.decode() if given is not None else uuid7()
        scope[SCOPE_KEY] = request_id
        echoed = (HEADER, request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), echoed]
            await send(message)

        await self.app(scope, receive, send_with_id)


def request_id_of(scope: Scope) -> str | None:
    """The id of the request in scope (None outside RequestIds: an app built without it)."""
    return scope.get(SCOPE_KEY)
