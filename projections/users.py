"""The users reducer: a username's state after one more user event of the security topic.
Pure: no clock, no I/O.

A username is registered once at a time: a second UserRegistered for a username that is
active (two API nodes registering it at the same moment) changes nothing, so the first on
the log wins everywhere. After UserRemoved the username may be registered again, as a new
user with a new user_id. A change or removal names the user_id it is meant for, and one
that names another registration of the username (a stale one) changes nothing: the
user_id fences them, as the attempt number fences a job's events.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from operator import attrgetter
from typing import Any

import msgspec
from msgspec.structs import replace

from jobledger.schemas import (
    Actor,
    Envelope,
    Permission,
    UserPermissionsChanged,
    UserRegistered,
    UserRemoved,
)
from jobledger.schemas.common import to_ms

from .fold import fold_states


class UserState(msgspec.Struct, frozen=True, gc=False):
    """Times are Unix milliseconds."""

    username: str
    user_id: str
    password_hash: str  # argon2id PHC string: salt and parameters included
    permissions: tuple[Permission, ...]
    created_at: int
    created_by: Actor
    changed_at: int | None = None
    changed_by: Actor | None = None
    removed_at: int | None = None
    removed_by: Actor | None = None
    # Events of the username applied so far (every registration of it): a later state of a
    # username always has a higher revision, so a node can tell which of two is newer.
    revision: int = 1

    @property
    def active(self) -> bool:
        return self.removed_at is None


def _permissions(given: list[Permission]) -> tuple[Permission, ...]:
    return tuple(sorted(set(given)))


def reduce_user(state: UserState | None, env: Envelope) -> UserState | None:
    """The state after env; the same object when env changes nothing."""
    event = env.event
    if isinstance(event, UserRegistered):
        if state is not None and state.active:
            return state  # the username is taken: kept in the history, ignored
        return UserState(
            username=event.username, user_id=event.user_id, password_hash=event.password_hash,
            permissions=_permissions(event.permissions), created_at=to_ms(env.time),
            created_by=env.actor, revision=state.revision + 1 if state is not None else 1)
    if not isinstance(event, UserPermissionsChanged | UserRemoved):
        return state
    if state is None or not state.active or event.user_id != state.user_id:
        return state  # an unknown, removed or other registration: nothing to change
    if isinstance(event, UserPermissionsChanged):
        return replace(state, permissions=_permissions(event.permissions),
                       changed_at=to_ms(env.time), changed_by=env.actor,
                       revision=state.revision + 1)
    return replace(state, removed_at=to_ms(env.time), removed_by=env.actor,
                   revision=state.revision + 1)


def fold_users(
    envs: Iterable[Envelope], states: MutableMapping[str, UserState]
) -> dict[str, UserState]:
    """Apply envs to `states` by username (updated in place); the final state of each
    changed username."""
    return fold_states(envs, states, reduce_user, attrgetter("event.username"))


# -- rows of the users table (column order = schema.sql) ------------------------------------

_encoder = msgspec.json.Encoder()
_actor = msgspec.json.Decoder(Actor)
_permissions_of = msgspec.json.Decoder(tuple[Permission, ...])


def _actor_or_none(data: bytes | None) -> Actor | None:
    return _actor.decode(data) if data is not None else None


def _encoded(actor: Actor | None) -> bytes | None:
    return _encoder.encode(actor) if actor is not None else None


def user_row(u: UserState) -> tuple[Any, ...]:
    return (
        u.username, u.user_id, u.password_hash, _encoder.encode(u.permissions), u.created_at,
        _encoder.encode(u.created_by), u.changed_at, _encoded(u.changed_by), u.removed_at,
        _encoded(u.removed_by), u.revision,
    )


def user_from_row(row: tuple[Any, ...]) -> UserState:
    (username, user_id, password_hash, permissions, created_at, created_by, changed_at,
     changed_by, removed_at, removed_by, revision) = row
    return UserState(
        username=username, user_id=user_id, password_hash=password_hash,
        permissions=_permissions_of.decode(permissions), created_at=created_at,
        created_by=_actor.decode(created_by), changed_at=changed_at,
        changed_by=_actor_or_none(changed_by), removed_at=removed_at,
        removed_by=_actor_or_none(removed_by), revision=revision,
    )
