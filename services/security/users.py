"""The write side of users: register, change permissions, remove (each an event on the
security topic, keyed by username). The password is hashed here, before anything is
appended, and never leaves this module in any other form."""

from __future__ import annotations

from jobledger.projections.queries import Queries
from jobledger.projections.users import UserState, reduce_user
from jobledger.schemas import (
    Actor,
    Event,
    Permission,
    UserPermissionsChanged,
    UserRegistered,
    UserRemoved,
    uuid7,
)
from jobledger.services.runtime.projector import Projector
from jobledger.services.write.publisher import Publisher

from .commands import KeyCommandError, append_visible
from .passwords import Passwords


class UserCommands:
    def __init__(self, publisher: Publisher, projector: Projector, queries: Queries,
                 passwords: Passwords | None = None):
        self.publisher = publisher
        self.projector = projector
        self.queries = queries
        self.passwords = passwords or Passwords()

    async def register(self, username: str, password: str, permissions: list[Permission],
                       actor: Actor, request_id: str | None = None) -> UserState:
        """A new user; KeyCommandError 409 when the username is taken. Two nodes
        registering one username at once: the first on the log wins, the other is 409.
        request_id, here and below: the request that asked (the event's causal ids)."""
        state = await self.queries.user(username)
        if state is not None and state.active:
            raise _taken(username)
        event = UserRegistered(user_id=uuid7(), username=username,
                               password_hash=await self.passwords.hash(password),
                               permissions=sorted(set(permissions)))
        after = await self._append(state, event, actor, request_id)
        held = await self.queries.user(username)
        if held is not None and held.active and held.user_id != event.user_id:
            raise _taken(username)  # another registration came first
        return after

    async def change_permissions(self, username: str, permissions: list[Permission],
                                 actor: Actor, request_id: str | None = None) -> UserState:
        """The user now holds exactly these; KeyCommandError 404 for no such user."""
        state = await self._active(username)
        wanted = tuple(sorted(set(permissions)))
        if wanted == state.permissions:
            return state  # nothing to append
        return await self._append(state, UserPermissionsChanged(
            user_id=state.user_id, username=username, permissions=list(wanted)), actor,
            request_id)

    async def remove(self, username: str, actor: Actor,
                     request_id: str | None = None) -> UserState:
        """The user can no longer sign in and its tokens stop working; removing a removed
        user changes nothing. KeyCommandError 404 for a username never registered."""
        state = await self.queries.user(username)
        if state is None:
            raise _unknown(username)
        if not state.active:
            return state
        return await self._append(state, UserRemoved(user_id=state.user_id,
                                                     username=username), actor, request_id)

    async def _active(self, username: str) -> UserState:
        state = await self.queries.user(username)
        if state is None or not state.active:
            raise _unknown(username)
        return state

    async def _append(self, state: UserState | None, event: Event, actor: Actor,
                      request_id: str | None) -> UserState:
        env = await append_visible(self.publisher, self.projector, event,
                                   event.username, actor, request_id)  # type: ignore[union-attr]
        after = reduce_user(state, env)
        assert after is not None
        return after


def _taken(username: str) -> KeyCommandError:
    return KeyCommandError(409, "CONFLICT", f"the username {username!r} is taken", "username")


def _unknown(username: str) -> KeyCommandError:
    return KeyCommandError(404, "NOT_FOUND", f"no user {username!r}", "username")
