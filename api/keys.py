"""/api/v1/keys: create, list and revoke API keys (admin only). A key is shown once, in the
answer that creates it; the log and the read models keep its digest."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from jobledger.projections.keys import KeyState
from jobledger.schemas import Permission
from jobledger.schemas.api import ActorView
from jobledger.schemas.common import iso_ms, to_ms
from jobledger.schemas.security import KeyRequest, KeyStatus, KeyView, NewKey
from jobledger.services.write.producer import invalid_body

from .body import read_json
from .deps import node
from .openapi import APPEND_ERRORS, JSON_BODY_ERRORS, Endpoint, Reply, routes_of
from .request_id import request_id_of
from .responses import JSON
from .tasks import actor_of

MAX_KEY_BODY_BYTES = 4096
_decoder = msgspec.json.Decoder(KeyRequest)


def _parse(body: bytes) -> KeyRequest:
    try:
        return _decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise invalid_body(exc) from None  # 400 naming the field, as for a task


def key_view(state: KeyState, now_ms: int) -> KeyView:
    status = KeyStatus.ACTIVE
    if state.revoked_at is not None:
        status = KeyStatus.REVOKED
    elif state.expires_at is not None and now_ms >= state.expires_at:
        status = KeyStatus.EXPIRED
    return KeyView(
        id=state.key_id, name=state.name, prefix=state.prefix,
        permissions=list(state.permissions), status=status,
        created_at=iso_ms(state.created_at) or "", created_by=ActorView.of(state.created_by),
        expires_at=iso_ms(state.expires_at), revoked_at=iso_ms(state.revoked_at),
        revoked_by=ActorView.of(state.revoked_by) if state.revoked_by is not None else None,
    )


async def create_key(request: Request) -> Response:
    asked = _parse(await read_json(request, MAX_KEY_BODY_BYTES))
    state, key = await node(request).keys.create(asked.name, asked.permissions, actor_of(request),
                                                 asked.expires_at,
                                                 request_id=request_id_of(request.scope))
    return JSON(NewKey(id=state.key_id, name=state.name, prefix=state.prefix,
                       permissions=list(state.permissions),
                       created_at=iso_ms(state.created_at) or "",
                       expires_at=iso_ms(state.expires_at), key=key), 201)


async def list_keys(request: Request) -> Response:
    n = node(request)
    now = to_ms(n.clock.now())
    return JSON([key_view(k, now) for k in await n.queries.keys()])


async def revoke_key(request: Request) -> Response:
    n = node(request)
    state = await n.keys.revoke(request.path_params["key_id"], actor_of(request),
                                request_id_of(request.scope))
    return JSON(key_view(state, to_ms(n.clock.now())))


endpoints = [
    Endpoint("POST", "/api/v1/keys", create_key, "Create an API key", tag="keys",
             body=KeyRequest, replies={201: Reply("created: `key` is shown this once", NewKey)},
             errors={**JSON_BODY_ERRORS, **APPEND_ERRORS},
             description="The key (jl_...) is in this answer only: the server keeps its "
             "SHA-256 digest. Send it as `Authorization: Bearer <key>`.",
             access=Permission.ADMIN),
    Endpoint("GET", "/api/v1/keys", list_keys, "List API keys, never their secrets",
             tag="keys", replies={200: Reply("every key, revoked ones too", list[KeyView])},
             access=Permission.ADMIN),
    Endpoint("DELETE", "/api/v1/keys/{key_id}", revoke_key, "Revoke an API key", tag="keys",
             replies={200: Reply("revoked (again: unchanged)", KeyView)},
             errors={404: "no key with that id", **APPEND_ERRORS},
             description="Every node refuses the key once it has projected the revocation "
             "(within about a second in the Kafka mode).",
             access=Permission.ADMIN),
]
routes = routes_of(endpoints)
