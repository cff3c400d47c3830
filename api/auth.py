"""Authorization at each route: every endpoint declares what it needs (`Endpoint.access`:
a Permission, or PUBLIC), and `guard` / `guard_asgi` wrap its handler with the check, so
the busiest route (POST /api/v1/tasks, served by api/hot.py ahead of the router) is
checked exactly as the others are.

With auth off nothing is checked, and the actor of a request's events is the label it
sends in X-API-Key-Name (unverified). With auth on, a route that is not PUBLIC needs
`Authorization: Bearer <key>` naming a key that holds its permission (admin holds every
one): 401 UNAUTHORIZED with `WWW-Authenticate: Bearer` when there is no valid credential,
403 FORBIDDEN naming the permission when the key lacks it. The request's events then
carry the key as their actor, and X-API-Key-Name is ignored.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Final, Literal, TypeAlias

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from jobledger.schemas import Permission
from jobledger.services.security.principals import Principal, Unauthenticated
from jobledger.services.security.setup import Security

from .responses import ApiError

PUBLIC: Final = "public"  # a route anyone may call, auth on or off
Access: TypeAlias = Permission | Literal["public"]
PRINCIPAL = "jobledger.principal"  # the scope key of the authenticated caller
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="jobledger"'}

Handler = Callable[[Request], Awaitable[Response]]
AsgiFunction = Callable[[Scope, Receive, Send], Awaitable[None]]


def authorize(scope: Scope, access: Access) -> None:
    """Check the request's credential against what the route needs; raise the 401 or 403.
    The principal is left in scope[PRINCIPAL] for the actor of its events."""
    security: Security = scope["app"].state.security
    if access == PUBLIC or not security.enabled:
        return
    try:
        principal = security.authenticate(_authorization(scope))
    except Unauthenticated as exc:
        raise ApiError(401, "UNAUTHORIZED", str(exc), headers=CHALLENGE) from None
    if not principal.allows(access):
        raise ApiError(403, "FORBIDDEN", f"the API key {principal.actor.name!r} lacks the "
                       f"{access} permission this needs", details={"required": str(access)})
    scope[PRINCIPAL] = principal


def principal_of(scope: Scope) -> Principal | None:
    principal: Principal | None = scope.get(PRINCIPAL)
    return principal


def _authorization(scope: Scope) -> str | None:
    """The first Authorization header (latin-1, as HTTP headers are)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bytes(value).decode("latin-1")
    return None


def guard(handler: Handler, access: Access) -> Handler:
    """The handler, checked first."""

    @functools.wraps(handler)
    async def guarded(request: Request) -> Response:
        authorize(request.scope, access)
        return await handler(request)

    return guarded


def guard_asgi(app: AsgiFunction, access: Access) -> AsgiFunction:
    """A plain ASGI handler (api/hot.py), checked first."""

    @functools.wraps(app)
    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        authorize(scope, access)
        await app(scope, receive, send)

    return guarded
