"""The users reducer and read model: users registered, their permissions changed and users
removed on the security topic, folded with the keys in one transaction; and the node's
user index, which must never let an older state of a username replace a newer one."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobledger.projections.queries import Queries
from jobledger.projections.store import ReadModelStore
from jobledger.projections.users import (
    UserState,
    fold_users,
    reduce_user,
    user_from_row,
    user_row,
)
from jobledger.schemas import (
    Actor,
    ActorKind,
    KeyCreated,
    Permission,
    UserPermissionsChanged,
    UserRegistered,
    UserRemoved,
)
from jobledger.schemas.common import to_ms
from jobledger.services.runtime.projector import Projector
from jobledger.services.security.principals import Unauthenticated, UserIndex
from tests.support.builders import append, at, envelope, open_log

ADMIN = Actor(ActorKind.KEY, "k-admin", "ops")
HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"


def registered(user_id: str = "u1", username: str = "ana", *permissions: Permission
               ) -> UserRegistered:
    return UserRegistered(user_id=user_id, username=username, password_hash=HASH,
                          permissions=list(permissions or [Permission.READ_TASKS]))


def changed(user_id: str = "u1", *permissions: Permission) -> UserPermissionsChanged:
    return UserPermissionsChanged(user_id=user_id, username="ana", permissions=list(permissions))


def test_a_registration_records_who_and_when_and_sorts_the_permissions() -> None:
    event = registered("u1", "ana", Permission.SUBMIT_TASKS, Permission.READ_TASKS,
                       Permission.SUBMIT_TASKS)
    assert reduce_user(None, envelope(event, 10, actor=ADMIN)) == UserState(
        username="ana", user_id="u1", password_hash=HASH,
        permissions=(Permission.READ_TASKS, Permission.SUBMIT_TASKS), created_at=to_ms(at(10)),
        created_by=ADMIN)


def test_an_active_username_is_registered_once_the_first_on_the_log_wins() -> None:
    first = reduce_user(None, envelope(registered("u1"), 0))
    assert reduce_user(first, envelope(registered("u2", "ana", Permission.ADMIN), 1)) is first


def test_changes_and_removal_apply_to_their_registration_only() -> None:
    state = reduce_user(None, envelope(registered("u1"), 0))
    admin = reduce_user(state, envelope(changed("u1", Permission.ADMIN), 5, actor=ADMIN))
    assert admin is not None
    assert (admin.permissions, admin.changed_at, admin.changed_by, admin.revision) == (
        (Permission.ADMIN,), to_ms(at(5)), ADMIN, 2)
    assert reduce_user(admin, envelope(changed("u0", Permission.READ_TASKS), 6)) is admin
    removed = reduce_user(admin, envelope(UserRemoved(user_id="u1", username="ana"), 7))
    assert removed is not None and not removed.active and removed.removed_at == to_ms(at(7))
    # A removed user changes no more; the name may be registered again, as another user.
    assert reduce_user(removed, envelope(changed("u1", Permission.ADMIN), 8)) is removed
    again = reduce_user(removed, envelope(registered("u2"), 9))
    assert again is not None and (again.user_id, again.active, again.revision) == ("u2", True, 4)


def test_changing_or_removing_an_unknown_user_makes_none() -> None:
    assert reduce_user(None, envelope(changed("u1", Permission.ADMIN), 0)) is None
    assert reduce_user(None, envelope(UserRemoved(user_id="u1", username="ana"), 0)) is None


def test_fold_gives_each_changed_username_once_in_its_last_state() -> None:
    states: dict[str, UserState] = {}
    out = fold_users([envelope(registered("u1"), 0), envelope(registered("u2", "bob"), 1),
                      envelope(changed("u1", Permission.ADMIN), 2)], states)
    assert sorted(out) == ["ana", "bob"] and out["ana"].permissions == (Permission.ADMIN,)
    assert states == out


@pytest.mark.parametrize("removed", [False, True])
def test_a_row_gives_back_the_state(removed: bool) -> None:
    state = reduce_user(None, envelope(registered(), 0, actor=ADMIN))
    state = reduce_user(state, envelope(changed("u1", Permission.ADMIN), 1, actor=ADMIN))
    if removed:
        state = reduce_user(state, envelope(UserRemoved(user_id="u1", username="ana"), 2))
    assert state is not None and user_from_row(user_row(state)) == state


def test_the_index_keeps_the_newest_state_of_a_username() -> None:
    first = reduce_user(None, envelope(registered("u1"), 0))
    admin = reduce_user(first, envelope(changed("u1", Permission.ADMIN), 1))
    assert first is not None and admin is not None
    index = UserIndex()
    index.put([admin])
    index.put([first])  # an older state delivered late (the initial load): ignored
    assert index.principal("u1").permissions == {Permission.ADMIN}
    removed = reduce_user(admin, envelope(UserRemoved(user_id="u1", username="ana"), 2))
    assert removed is not None
    index.put([removed])
    with pytest.raises(Unauthenticated, match="removed"):
        index.principal("u1")
    assert index.named("ana") is None


async def test_the_projector_writes_users_and_keys_in_one_checkpoint(tmp_path: Path) -> None:
    backend = await open_log(tmp_path / "log.db")
    store = await ReadModelStore.open(tmp_path / "views.db")
    queries = await Queries.open(tmp_path / "views.db")
    try:
        heard: list[list[UserState]] = []
        projector = Projector(backend, store)
        projector.user_listeners.append(heard.append)
        key = KeyCreated(key_id="k1", name="ci", prefix="jl_AbCd1234", digest="ab" * 32,
                         permissions=[Permission.ADMIN])
        await append(backend, [envelope(key, 0, actor=ADMIN),
                               envelope(registered(), 1, actor=ADMIN),
                               envelope(changed("u1", Permission.ADMIN), 2, actor=ADMIN)])
        await projector.catch_up()
        (user,) = await queries.users()
        assert user == await queries.user("ana") and user.permissions == (Permission.ADMIN,)
        assert [k.key_id for k in await queries.keys()] == ["k1"]
        assert await store.checkpoints("keys") == {0: 3}
        assert [[u.revision for u in batch] for batch in heard] == [[2]]
    finally:
        await queries.close()
        await store.close()
        await backend.close()
