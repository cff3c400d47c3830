"""The write side of API keys and users, shared by the REST API and the start-up bootstrap:
append the event, wait until the read model (and so this node's key and user indexes)
shows it."""

from __future__ import annotations

import asyncio
from datetime import datetime

from jobledger.projections.keys import KeyState, reduce_key
from jobledger.projections.queries import Queries
from jobledger.schemas import (
    SECURITY,
    Actor,
    Envelope,
    Event,
    KeyCreated,
    KeyRevoked,
    Permission,
    uuid7,
)
from jobledger.services.runtime.clock import Clock
from jobledger.services.runtime.projector import Projector
from jobledger.services.write.publisher import Publisher

from .keys import digest_of, display_prefix, new_key

VISIBLE_WAIT_SECONDS = 5.0  # how long a write waits for the read model to show it
KEYS = "keys"  # the read model


class KeyCommandError(Exception):
    """A key or user command that cannot be carried out; status, code and field are the
    API's."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.code, self.field = status, code, field


class KeyCommands:
    def __init__(self, publisher: Publisher, projector: Projector, queries: Queries,
                 clock: Clock):
        self.publisher = publisher
        self.projector = projector
        self.queries = queries
        self.clock = clock

    async def create(self, name: str, permissions: list[Permission], actor: Actor,
                     expires_at: datetime | None = None, *, key: str | None = None,
                     key_id: str | None = None,
                     request_id: str | None = None) -> tuple[KeyState, str]:
        """A new key (or the given one: JOBLEDGER_ADMIN_KEY) and its state. The key is
        returned to be shown once; only its digest is kept. request_id: the request that
        asked (the event's cause and correlation id), None for the start-up bootstrap."""
        if expires_at is not None and expires_at <= self.clock.now():
            raise KeyCommandError(400, "INVALID_ARGUMENT",
                            f"expires_at {expires_at.isoformat()} has passed", "expires_at")
        key = key or new_key()
        key_id = key_id or uuid7()
        event = KeyCreated(key_id=key_id, name=name, prefix=display_prefix(key),
                           digest=digest_of(key), permissions=sorted(set(permissions)),
                           expires_at=expires_at)
        state = await self._append(None, event, actor, request_id)
        assert state is not None
        return state, key

    async def revoke(self, key_id: str, actor: Actor, request_id: str | None = None) -> KeyState:
        """Revoke a key (a revoked one stays as it is); KeyCommandError 404 for an unknown id."""
        state = await self.state(key_id)
        if state is None:
            raise KeyCommandError(404, "NOT_FOUND", f"no API key {key_id!r}", "id")
        if state.revoked_at is None:
            state = await self._append(state, KeyRevoked(key_id=key_id), actor, request_id)
            assert state is not None
        return state

    async def state(self, key_id: str) -> KeyState | None:
        return await self.queries.key(key_id)

    async def _append(self, state: KeyState | None, event: Event, actor: Actor,
                      request_id: str | None) -> KeyState | None:
        """Append, wait until visible (append_visible); the state after the event, by the
        reducer, so a slow projection only delays its being seen."""
        env = await append_visible(self.publisher, self.projector, event,
                                   event.key_id, actor, request_id)  # type: ignore[union-attr]
        return reduce_key(state, env)


async def append_visible(publisher: Publisher, projector: Projector, event: Event, key: str,
                         actor: Actor, request_id: str | None = None) -> Envelope:
    """Append once durable to the security topic, then wait (bounded) until its model shows
    it: the key or user works, or no longer works, on this node when the request answers;
    other nodes follow as they project the security topic. The request that asked is the
    event's cause and its chain (docs/events.md, "Causal ids")."""
    env = publisher.envelope(event, key, actor=actor, causation_id=request_id,
                             correlation_id=request_id)
    partition, offset = await publisher.publish_envelope(env, SECURITY)
    try:
        await asyncio.wait_for(projector.wait_for(KEYS, partition, offset),
                               VISIBLE_WAIT_SECONDS)
    except TimeoutError:
        pass
    return env
