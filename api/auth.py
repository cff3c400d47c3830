"""Authorization at each route: every endpoint declares what it needs (`Endpoint.access`:
a Permission, or PUBLIC), and `guard` / `guard_asgi` wrap its handler with the check, so
the busiest route (POST /api/v1/tasks, served by api/hot.py ahead of the router) is
checked exactly as the others are.

With auth off nothing is checked, and the actor of a request's events is the label it
sends in X-API-Key-Name (unverified). With auth on, a route that is not PUBLIC needs
`Authorization: Bearer <key or token>` naming a key, or a user signed in with a token
(api/users.py), that holds its permission (admin holds every one), or the dashboard's
session cookie standing for one (api/cookies.py): 401 UNAUTHORIZED with
`WWW-Authenticate: Bearer` when there is no valid credential, 403 FORBIDDEN naming the
permission when the key or user lacks it, 429 RATE_LIMITED (with Retry-After) when the
key or user has spent its rate limit. The request's events then carry the key or user as
their actor, and X-API-Key-Name is ignored.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Final, Literal, TypeAlias

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobledger.schemas import ActorKind, Permission
from jobledger.services.security.principals import Principal, Unauthenticated
from jobledger.services.security.ratelimit import Decision
from jobledger.services.security.setup import Security

from .cookies import session_id_of, session_principal
from .responses import ApiError

PUBLIC: Final = "public"  # a route anyone may call, auth on or off
# POST /auth/register: admin, or with --open-registration anyone (the handler then grants
# read_tasks only to a caller without admin).
REGISTRATION: Final = "registration"
Access: TypeAlias = Permission | Literal["public", "registration"]
PRINCIPAL = "jobledger.principal"  # the scope key of the authenticated caller
RATE = "jobledger.rate"  # the scope key of its rate limit's verdict (ratelimit.Decision)
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="jobledger"'}

Handler = Callable[[Request], Awaitable[Response]]
AsgiFunction = Callable[[Scope, Receive, Send], Awaitable[None]]


def authorize(scope: Scope, access: Access) -> None:
    """Check the request's credential against what the route needs; raise the 401 or 403.
    The principal is left in scope[PRINCIPAL] for the actor of its events."""
    security: Security = scope["app"].state.security
    if access == PUBLIC or not security.enabled:
        return
    authorization = _authorization(scope)
    open_to_all = access == REGISTRATION and security.settings.open_registration
    if open_to_all and authorization is None and session_id_of(scope) is None:
        return  # anyone may register (with read_tasks only)
    try:
        principal = _principal(scope, security, authorization)
    except Unauthenticated as exc:
        raise ApiError(401, "UNAUTHORIZED", str(exc), headers=CHALLENGE) from None
    decision = security.admit(principal)
    if decision is not None:
        scope[RATE] = decision  # RateLimitHeaders puts it on the answer
        if not decision.allowed:
            raise ApiError(429, "RATE_LIMITED", "Rate limit exceeded",
                           headers={"Retry-After": str(decision.retry_after_s)})
    if access == REGISTRATION and not open_to_all:
        access = Permission.ADMIN
    if access != REGISTRATION and not principal.allows(access):
        raise ApiError(403, "FORBIDDEN", f"the {_WHO[principal.actor.kind]} "
                       f"{principal.actor.name!r} lacks the {access} permission this needs",
                       details={"required": str(access)})
    scope[PRINCIPAL] = principal


_WHO = {ActorKind.KEY: "API key", ActorKind.USER: "user"}


def _principal(scope: Scope, security: Security, authorization: str | None) -> Principal:
    """Who the caller is: the credential of its Authorization header, else the dashboard's
    session cookie (api/cookies.py: with its CSRF or Origin check)."""
    if authorization is None and (session_id := session_id_of(scope)) is not None:
        return session_principal(scope, security, session_id)
    return security.authenticate(authorization)


def principal_of(scope: Scope) -> Principal | None:
    principal: Principal | None = scope.get(PRINCIPAL)
    return principal


def _authorization(scope: Scope) -> str | None:
    """The first Authorization header (latin-1, as HTTP headers are)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bytes(value).decode("latin-1")
    return None


class RateLimitHeaders:
    """Adds RateLimit-Limit, -Remaining and -Reset to every answer of a request whose key
    has a rate limit (the 429 included). In front of every other middleware, hot routes
    included; the app has it only when limits are on (api/app.py)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_limits(message: Message) -> None:
            decision: Decision | None = scope.get(RATE)
            if decision is not None and message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *decision.headers()]
            await send(message)

        await self.app(scope, receive, send_with_limits)


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
