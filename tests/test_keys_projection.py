"""The keys reducer and read model: API keys created and revoked on the security topic."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobledger.projections.keys import KeyState, fold_keys, key_from_row, key_row, reduce_key
from jobledger.projections.queries import Queries
from jobledger.projections.store import ReadModelStore
from jobledger.schemas import Actor, ActorKind, KeyCreated, KeyRevoked, Permission
from jobledger.schemas.common import to_ms
from jobledger.services.runtime.projector import Projector
from tests.support.builders import append, at, envelope, open_log

ADMIN = Actor(ActorKind.KEY, "k-admin", "ops")
DIGEST = "ab" * 32


def created(key_id: str = "k1", digest: str = DIGEST, **fields: object) -> KeyCreated:
    values: dict[str, object] = {"name": "ci", "prefix": "jl_AbCd1234",
                                 "permissions": [Permission.SUBMIT_TASKS]}
    values.update(fields)
    return KeyCreated(key_id=key_id, digest=digest, **values)  # type: ignore[arg-type]


def test_a_created_key_records_who_made_it_and_when() -> None:
    event = created(permissions=[Permission.READ_TASKS, Permission.SUBMIT_TASKS,
                                 Permission.READ_TASKS], expires_at=at(3600))
    state = reduce_key(None, envelope(event, 10, actor=ADMIN))
    assert state == KeyState(
        key_id="k1", name="ci", prefix="jl_AbCd1234", digest=DIGEST,
        permissions=(Permission.READ_TASKS, Permission.SUBMIT_TASKS),  # sorted, once each
        created_at=to_ms(at(10)), created_by=ADMIN, expires_at=to_ms(at(3600)))


def test_a_second_creation_with_the_same_id_changes_nothing() -> None:
    """Not even the digest or the permissions: a later event cannot rewrite a key."""
    first = reduce_key(None, envelope(created(), 0, actor=ADMIN))
    again = created(digest="cd" * 32, permissions=[Permission.ADMIN])
    assert reduce_key(first, envelope(again, 5, actor=ADMIN)) is first


def test_revocation_records_who_and_when_once() -> None:
    state = reduce_key(None, envelope(created(), 0, actor=ADMIN))
    revoker = Actor(ActorKind.KEY, "k-other", "sec")
    revoked = reduce_key(state, envelope(KeyRevoked(key_id="k1"), 20, actor=revoker))
    assert revoked is not None
    assert (revoked.revoked_at, revoked.revoked_by) == (to_ms(at(20)), revoker)
    assert reduce_key(revoked, envelope(KeyRevoked(key_id="k1"), 30, actor=ADMIN)) is revoked
    # ... and a revoked key is never created again under its id.
    assert reduce_key(revoked, envelope(created(), 40, actor=ADMIN)) is revoked


def test_revoking_an_unknown_key_makes_none() -> None:
    assert reduce_key(None, envelope(KeyRevoked(key_id="nope"), 0)) is None


def test_fold_gives_each_changed_key_once_in_its_last_state() -> None:
    states: dict[str, KeyState] = {}
    changed = fold_keys([envelope(created("k1"), 0), envelope(created("k2", "cd" * 32), 1),
                         envelope(KeyRevoked(key_id="k1"), 2),
                         envelope(KeyRevoked(key_id="k9"), 3)], states)
    assert sorted(changed) == ["k1", "k2"] and changed["k1"].revoked_at == to_ms(at(2))
    assert states == changed


@pytest.mark.parametrize("revoked", [False, True])
def test_a_row_gives_back_the_state(revoked: bool) -> None:
    state = reduce_key(None, envelope(created(expires_at=at(99)), 0, actor=ADMIN))
    assert state is not None
    if revoked:
        state = reduce_key(state, envelope(KeyRevoked(key_id="k1"), 1, actor=ADMIN))
        assert state is not None
    assert key_from_row(key_row(state)) == state


async def test_the_projector_writes_keys_with_their_checkpoint(tmp_path: Path) -> None:
    backend = await open_log(tmp_path / "log.db")
    store = await ReadModelStore.open(tmp_path / "views.db")
    queries = await Queries.open(tmp_path / "views.db")
    try:
        heard: list[list[KeyState]] = []
        projector = Projector(backend, store)
        projector.key_listeners.append(heard.append)
        await append(backend, [envelope(created(), 0, actor=ADMIN),
                               envelope(KeyRevoked(key_id="k1"), 1, actor=ADMIN)])
        await projector.catch_up()
        (key,) = await queries.keys()
        assert key.revoked_by == ADMIN and key == await queries.key("k1")
        assert await store.checkpoints("keys") == {0: 2}
        assert [[k.revoked_at for k in batch] for batch in heard] == [[to_ms(at(1))]]
        # The log holds the digest and the display prefix, never a key.
        (first, _) = await backend.topic("security").read(0, 0, limit=2)
        assert DIGEST.encode() in first.value and b'"prefix":"jl_AbCd1234"' in first.value
    finally:
        await queries.close()
        await store.close()
        await backend.close()
