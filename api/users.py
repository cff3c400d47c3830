"""Users and sign-in (seed 004): /auth/register, /auth/login, and /api/v1/users to list
users, change their permissions and remove them (admin only). A password is in the
request that registers or signs in, and nowhere else: the log keeps its argon2id hash,
and no answer, error or log line carries either (docs/security.md)."""

from __future__ import annotations

from typing import TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from jobledger.projections.users import UserState
from jobledger.schemas import Actor, Permission
from jobledger.schemas.api import ActorView
from jobledger.schemas.common import iso_ms
from jobledger.schemas.security import (
    LoginRequest,
    PermissionsRequest,
    RegisterRequest,
    Token,
    UserStatus,
    UserView,
)
from jobledger.services.security.logins import LoginRefused, LoginsLimited
from jobledger.services.security.setup import Security
from jobledger.services.security.tokens import TOKEN_TYPE
from jobledger.services.write.producer import invalid_body

from .auth import CHALLENGE, PUBLIC, REGISTRATION, principal_of
from .body import read_json
from .deps import node
from .openapi import APPEND_ERRORS, JSON_BODY_ERRORS, Endpoint, Reply, routes_of
from .request_id import request_id_of
from .responses import JSON, ApiError
from .tasks import actor_of

MAX_USER_BODY_BYTES = 4096
OPEN_PERMISSIONS = [Permission.READ_TASKS]  # what --open-registration grants
T = TypeVar("T")


def _parse(body: bytes, decoder: msgspec.json.Decoder[T]) -> T:
    try:
        return decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise invalid_body(exc) from None  # 400 naming the field; never the value sent


_register = msgspec.json.Decoder(RegisterRequest)
_login = msgspec.json.Decoder(LoginRequest)
_permissions = msgspec.json.Decoder(PermissionsRequest)


def _actor_view(actor: Actor | None) -> ActorView | None:
    return ActorView.of(actor) if actor is not None else None


def user_view(state: UserState) -> UserView:
    return UserView(
        id=state.user_id, username=state.username, permissions=list(state.permissions),
        status=UserStatus.ACTIVE if state.active else UserStatus.REMOVED,
        created_at=iso_ms(state.created_at) or "", created_by=ActorView.of(state.created_by),
        changed_at=iso_ms(state.changed_at), changed_by=_actor_view(state.changed_by),
        removed_at=iso_ms(state.removed_at), removed_by=_actor_view(state.removed_by),
    )


def _granted(request: Request, asked: list[Permission]) -> list[Permission]:
    """What a registration may hold: anything, for an admin (or with auth off); with
    --open-registration, read_tasks for anyone else (403 if more is asked)."""
    security: Security = request.app.state.security
    principal = principal_of(request.scope)
    if not security.enabled or (principal is not None and principal.allows(Permission.ADMIN)):
        return asked
    if set(asked) - set(OPEN_PERMISSIONS):
        raise ApiError(403, "FORBIDDEN", "open registration grants read_tasks only; other "
                       "permissions need an admin to register the user",
                       "permissions", details={"required": str(Permission.ADMIN)})
    return OPEN_PERMISSIONS


async def register(request: Request) -> Response:
    asked = _parse(await read_json(request, MAX_USER_BODY_BYTES), _register)
    permissions = _granted(request, asked.permissions)
    state = await node(request).users.register(asked.username, asked.password, permissions,
                                               actor_of(request), request_id_of(request.scope))
    return JSON(user_view(state), 201)


def _address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


async def login(request: Request) -> Response:
    asked = _parse(await read_json(request, MAX_USER_BODY_BYTES), _login)
    security: Security = request.app.state.security
    try:
        token = await security.login(asked.username, asked.password, _address(request))
    except LoginsLimited as limited:
        raise ApiError(429, "RATE_LIMITED", str(limited),
                       headers={"Retry-After": str(limited.retry_after_s)}) from None
    except LoginRefused as refused:
        raise ApiError(401, "UNAUTHORIZED", str(refused), headers=CHALLENGE) from None
    return JSON(Token(token=token, token_type=TOKEN_TYPE,
                      expires_in=security.settings.token_lifetime_s))


async def list_users(request: Request) -> Response:
    return JSON([user_view(u) for u in await node(request).queries.users()])


async def change_permissions(request: Request) -> Response:
    asked = _parse(await read_json(request, MAX_USER_BODY_BYTES), _permissions)
    state = await node(request).users.change_permissions(
        request.path_params["username"], asked.permissions, actor_of(request),
        request_id_of(request.scope))
    return JSON(user_view(state))


async def remove_user(request: Request) -> Response:
    state = await node(request).users.remove(request.path_params["username"],
                                             actor_of(request), request_id_of(request.scope))
    return JSON(user_view(state))


endpoints = [
    Endpoint("POST", "/auth/register", register, "Register a user", tag="users",
             body=RegisterRequest, replies={201: Reply("registered", UserView)},
             errors={**JSON_BODY_ERRORS, 409: "the username is taken", **APPEND_ERRORS},
             description="Admin only, unless the server runs with --open-registration: then "
             "anyone may register, with read_tasks only. `permissions` default to "
             "read_tasks. The password is kept as an argon2id hash.",
             access=REGISTRATION),
    Endpoint("POST", "/auth/login", login, "Sign in: a token for the Authorization header",
             tag="users", body=LoginRequest, replies={200: Reply("signed in", Token)},
             errors={**JSON_BODY_ERRORS, 401: "wrong username or password (UNAUTHORIZED)",
                     429: "too many failed logins for the username or from the address; "
                     "Retry-After says when to retry (RATE_LIMITED)"},
             description="Send the token as `Authorization: Bearer <token>` wherever an API "
             "key goes, until `expires_in` seconds have passed. The user's permissions are "
             "looked up on each request.",
             access=PUBLIC),
    Endpoint("GET", "/api/v1/users", list_users, "List users, never their passwords",
             tag="users", replies={200: Reply("every user, removed ones too", list[UserView])},
             access=Permission.ADMIN),
    Endpoint("PUT", "/api/v1/users/{username}/permissions", change_permissions,
             "Set a user's permissions", tag="users", body=PermissionsRequest,
             replies={200: Reply("changed (the same: unchanged)", UserView)},
             errors={**JSON_BODY_ERRORS, 404: "no such user", **APPEND_ERRORS},
             description="In effect on the user's next request, tokens already issued "
             "included.",
             access=Permission.ADMIN),
    Endpoint("DELETE", "/api/v1/users/{username}", remove_user, "Remove a user", tag="users",
             replies={200: Reply("removed (again: unchanged)", UserView)},
             errors={404: "no such user", **APPEND_ERRORS},
             description="The user can no longer sign in, and its tokens stop working on "
             "each node as it projects the removal.",
             access=Permission.ADMIN),
]
routes = routes_of(endpoints)
