"""Who a request is: the principal a presented key or token names, looked up in memory.

`KeyIndex` holds every key the keys read model has, by digest, fed by the projector's key
listeners (the same events on every node, so a key created or revoked on one API node is
known to all of them once each has projected it). Authenticating a request costs one
SHA-256 of the presented key and one dict lookup: no I/O, no comparison of secrets.

`UserIndex` is the same for users (fed by the user listeners): a token's signature and
claims are checked by services/security/tokens.py, then its user is looked up here, so
the permissions of a request are the user's as of now, not as of the token's issue.

Why no constant-time comparison: the secret is never compared. The lookup is by the
digest of what was presented, and an attacker who measures how long a dict lookup takes
learns at most something about a digest, which tells nothing about any key's secret
(finding a key whose digest starts a certain way is finding a SHA-256 preimage).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import msgspec

from jobledger.projections.keys import KeyState
from jobledger.projections.users import UserState
from jobledger.schemas import Actor, ActorKind, Permission
from jobledger.schemas.common import iso_ms

from .keys import digest_of

MAX_KEY_CHARS = 512  # a presented credential longer than this is not one of ours


class Principal(msgspec.Struct, frozen=True, gc=False):
    """An authenticated caller and what it may do."""

    actor: Actor  # what its events carry: {kind, id, name}
    permissions: frozenset[Permission]

    def allows(self, permission: Permission) -> bool:
        return permission in self.permissions or Permission.ADMIN in self.permissions


class Unauthenticated(Exception):
    """No valid credential: missing, malformed, unknown, revoked or expired (401)."""


class _Entry(msgspec.Struct, frozen=True, gc=False):
    state: KeyState
    principal: Principal


class KeyIndex:
    """Every known key by digest. `put` is the projector's key listener."""

    def __init__(self) -> None:
        self._by_digest: dict[str, _Entry] = {}

    def put(self, states: Iterable[KeyState]) -> None:
        """Learn these key states. A key only moves from created to revoked, so a revoked
        state is never replaced by an earlier, unrevoked one (the initial load and the
        listener may deliver the same key in either order)."""
        for state in states:
            known = self._by_digest.get(state.digest)
            if known is not None and known.state.revoked_at is not None:
                continue
            actor = Actor(ActorKind.KEY, state.key_id, state.name)
            self._by_digest[state.digest] = _Entry(
                state, Principal(actor, frozenset(state.permissions)))

    def state_of(self, key: str) -> KeyState | None:
        entry = self._by_digest.get(digest_of(key))
        return entry.state if entry is not None else None

    def authenticate(self, presented: str, now_ms: Callable[[], int]) -> Principal:
        """The principal of a presented key; Unauthenticated saying why there is none.
        now_ms is asked only of a key that expires (reading the clock costs more than the
        rest of the lookup)."""
        if len(presented) > MAX_KEY_CHARS:
            raise Unauthenticated("the API key is not one this server issued")
        return self.authenticate_digest(digest_of(presented), now_ms)

    def authenticate_digest(self, digest: str, now_ms: Callable[[], int]) -> Principal:
        """authenticate, for a key known by its digest (a dashboard session's key)."""
        entry = self._by_digest.get(digest)
        if entry is None:
            raise Unauthenticated("the API key is not one this server issued")
        state = entry.state
        if state.revoked_at is not None:
            raise Unauthenticated(f"the API key {state.prefix}… was revoked at "
                                  f"{iso_ms(state.revoked_at)}")
        if state.expires_at is not None and now_ms() >= state.expires_at:
            raise Unauthenticated(f"the API key {state.prefix}… expired at "
                                  f"{iso_ms(state.expires_at)}")
        return entry.principal

    def has_admin(self, now_ms: int) -> bool:
        """Is there a key that holds admin and still authenticates?"""
        return any(Permission.ADMIN in e.state.permissions and e.state.revoked_at is None
                   and (e.state.expires_at is None or now_ms < e.state.expires_at)
                   for e in self._by_digest.values())


class UserIndex:
    """Every user the users read model has, by user_id (what a token names) and by
    username (what a login gives). `put` is the projector's user listener."""

    def __init__(self) -> None:
        self._by_name: dict[str, UserState] = {}
        self._by_id: dict[str, Principal] = {}  # active users only

    def put(self, states: Iterable[UserState]) -> None:
        """Learn these states of usernames; an older one than known is ignored (the
        initial load and the listener may deliver a username in either order)."""
        for state in states:
            known = self._by_name.get(state.username)
            if known is not None and known.revision >= state.revision:
                continue
            if known is not None:
                self._by_id.pop(known.user_id, None)
            self._by_name[state.username] = state
            if state.active:
                actor = Actor(ActorKind.USER, state.user_id, state.username)
                self._by_id[state.user_id] = Principal(actor, frozenset(state.permissions))

    def named(self, username: str) -> UserState | None:
        """The active user of that name, if any."""
        state = self._by_name.get(username)
        return state if state is not None and state.active else None

    def principal(self, user_id: str) -> Principal:
        """The principal of the user a valid token names, with the permissions the user
        holds now; Unauthenticated once the user is removed."""
        principal = self._by_id.get(user_id)
        if principal is None:
            raise Unauthenticated("the token's user was removed")
        return principal
