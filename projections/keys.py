"""The keys reducer: an API key's state after one more event of the security topic. Pure:
no clock, no I/O. Whether a key has expired is not a state: it depends on the time of the
request, so the lookup judges it (services/security/principals.py), not the reducer.

A key is created once: a second KeyCreated with the same id (an API node retrying, two
nodes registering the same JOBLEDGER_ADMIN_KEY) changes nothing, so its digest and
permissions cannot be rewritten by a later event. A revoked key stays revoked.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from operator import attrgetter
from typing import Any

import msgspec
from msgspec.structs import replace

from jobledger.schemas import Actor, Envelope, KeyCreated, KeyRevoked, Permission
from jobledger.schemas.common import to_ms

from .fold import fold_states


class KeyState(msgspec.Struct, frozen=True, gc=False):
    """Times are Unix milliseconds."""

    key_id: str
    name: str
    prefix: str
    digest: str  # hex SHA-256 of the key
    permissions: tuple[Permission, ...]
    created_at: int
    created_by: Actor
    expires_at: int | None = None
    revoked_at: int | None = None
    revoked_by: Actor | None = None


def reduce_key(state: KeyState | None, env: Envelope) -> KeyState | None:
    """The state after env; the same object when env changes nothing."""
    event = env.event
    if isinstance(event, KeyCreated):
        if state is not None:
            return state  # a duplicate: kept in the history, ignored
        expires = event.expires_at
        return KeyState(
            key_id=event.key_id, name=event.name, prefix=event.prefix, digest=event.digest,
            permissions=tuple(sorted(set(event.permissions))), created_at=to_ms(env.time),
            created_by=env.actor, expires_at=to_ms(expires) if expires is not None else None,
        )
    if isinstance(event, KeyRevoked) and state is not None and state.revoked_at is None:
        return replace(state, revoked_at=to_ms(env.time), revoked_by=env.actor)
    return state


def fold_keys(
    envs: Iterable[Envelope], states: MutableMapping[str, KeyState]
) -> dict[str, KeyState]:
    """Apply envs to `states` (updated in place); the final state of each changed key."""
    return fold_states(envs, states, reduce_key, attrgetter("event.key_id"))


# -- rows of the api_keys table (column order = schema.sql) --------------------------------

_encoder = msgspec.json.Encoder()
_actor = msgspec.json.Decoder(Actor)
_permissions = msgspec.json.Decoder(tuple[Permission, ...])


def key_row(k: KeyState) -> tuple[Any, ...]:
    return (
        k.key_id, k.name, k.prefix, k.digest, _encoder.encode(k.permissions), k.created_at,
        _encoder.encode(k.created_by), k.expires_at, k.revoked_at,
        _encoder.encode(k.revoked_by) if k.revoked_by is not None else None,
    )


def key_from_row(row: tuple[Any, ...]) -> KeyState:
    (key_id, name, prefix, digest, permissions, created_at, created_by, expires_at,
     revoked_at, revoked_by) = row
    return KeyState(
        key_id=key_id, name=name, prefix=prefix, digest=digest,
        permissions=_permissions.decode(permissions), created_at=created_at,
        created_by=_actor.decode(created_by), expires_at=expires_at, revoked_at=revoked_at,
        revoked_by=_actor.decode(revoked_by) if revoked_by is not None else None,
    )
