"""Who may join /ws: `authenticate_socket`, the one place a WebSocket is admitted, run by
the hub between the handshake and the join (api/ws.py:Hub.serve), so that nothing is
sent to a socket before it is authenticated.

With auth on, a socket needs read_tasks, presented one of these ways:
1. the upgrade request's `Authorization: Bearer <credential>` (non-browser clients);
2. the dashboard's session cookie, from a page of this server's Origin (api/cookies.py);
3. a first message `{"type": "auth", "token": <credential>}` within
   HubConfig.auth_timeout_s (5 s) by the node's clock: a browser cannot set headers on a
   WebSocket. It is answered `{"type": "authenticated"}`.
The credential is checked by the same function as the HTTP bearer header (api/auth.py),
so whatever that accepts (an API key, a sign-in token) is accepted here. A socket that
fails is closed with 1008 and the reason.

With auth off, there is no credential to present, so a browser page of a foreign origin
(any site the user visits) is refused: otherwise it could read every task through the
user's browser. Clients that send no Origin (not browsers) are admitted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, Literal

import msgspec
from starlette.types import Scope
from starlette.websockets import WebSocket

from jobledger.schemas import Permission
from jobledger.services.runtime.clock import Clock

from .auth import authorize, authorize_token
from .cookies import session_id_of
from .guard import origin_refusal
from .responses import ApiError
from .ws import AUTHENTICATED, endpoints

(WS_ACCESS,) = [e.access for e in endpoints
                if e.path == "/ws" and isinstance(e.access, Permission)]
POLICY_VIOLATION = 1008  # the close code of a socket that may not join
MAX_CLOSE_REASON = 120  # a close frame's reason is at most 123 bytes
FIRST_MESSAGE = 'send {"type": "auth", "token": <API key>} first'


class AuthMessage(msgspec.Struct, forbid_unknown_fields=True):
    type: Literal["auth"]
    token: str


_auth_message = msgspec.json.Decoder(AuthMessage)


class _Left(Exception):
    """The client closed before it authenticated."""


async def authenticate_socket(websocket: WebSocket) -> bool:
    """Admit the accepted socket (True), or close it with 1008 and the reason (False)."""
    try:
        await _authenticate(websocket)
    except ApiError as refused:
        with contextlib.suppress(RuntimeError, OSError):
            await websocket.close(POLICY_VIOLATION, str(refused)[:MAX_CLOSE_REASON])
        return False
    except _Left:
        return False
    return True


async def _authenticate(websocket: WebSocket) -> None:
    scope = websocket.scope
    state = scope["app"].state
    if not state.security.enabled:
        refusal = origin_refusal(scope, state.exposure.cors_origins)
        if refusal is not None:
            raise ApiError(403, "CROSS_SITE_REFUSED", refusal)
        return
    if _has_header(scope, b"authorization") or session_id_of(scope) is not None:
        authorize(scope, WS_ACCESS)  # the header, else the cookie with its Origin check
        return
    token = await _first_message_token(websocket, state.node.clock,
                                       state.hub_config.auth_timeout_s)
    authorize_token(scope, WS_ACCESS, token)
    await websocket.send_text(AUTHENTICATED)


async def _first_message_token(websocket: WebSocket, clock: Clock, timeout_s: float) -> str:
    """The token of the socket's first message, which must come within timeout_s."""
    message = await _first_of(websocket.receive(), clock.sleep(timeout_s))
    if message is None:
        raise _unauthenticated(f"no credential within {timeout_s:g} s: {FIRST_MESSAGE}")
    if message["type"] == "websocket.disconnect":
        raise _Left()
    try:
        return _auth_message.decode(message.get("text") or b"").token
    except msgspec.DecodeError:
        raise _unauthenticated(f"no credential: {FIRST_MESSAGE}, or the Authorization "
                               "header") from None


async def _first_of(receive: Coroutine[Any, Any, Any],
                    expiry: Coroutine[Any, Any, None]) -> Any:
    """What receive gives, or None if expiry comes first; the other is cancelled."""
    received, expired = asyncio.ensure_future(receive), asyncio.ensure_future(expiry)
    try:
        await asyncio.wait({received, expired}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (received, expired):
            task.cancel()
    return received.result() if received.done() and not received.cancelled() else None


def _has_header(scope: Scope, wanted: bytes) -> bool:
    return any(name == wanted for name, _ in scope["headers"])


def _unauthenticated(message: str) -> ApiError:
    return ApiError(401, "UNAUTHORIZED", message)
