"""Users and sign-in with auth on (issue 17, seed 004): register and login, tokens accepted
wherever a key is, forged tokens refused (each case counted), permission changes and
removals in effect on the next request, failed logins limited on a manual clock, open
registration, and the password kept off the logs and the log."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning

from jobledger.schemas import SECURITY, UserRegistered, decode
from jobledger.services.node.embedded import EmbeddedNode
from jobledger.services.security import logins
from jobledger.services.security.logins import USERNAME_BURST, USERNAME_PER_S
from jobledger.services.security.passwords import Passwords
from jobledger.services.security.tokens import ISSUER
from tests.support.api_harness import api_client, assert_error, handlers
from tests.support.auth import (
    ADMIN_KEY,
    JWT_SECRET,
    PASSWORD,
    auth_on,
    bearer,
    fast_passwords,
    login,
    make_user,
)
from tests.support.harness import NodeFactory, clock_of

ADMIN = bearer(ADMIN_KEY)


@pytest.fixture
async def node(make_node: NodeFactory) -> EmbeddedNode:
    made = await make_node(handlers)
    made.users.passwords = fast_passwords()
    return made


@pytest.fixture
async def client(node: EmbeddedNode, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(node, auth_on(tmp_path)) as c:
        yield c


def _register(username: str, *permissions: str, password: str = PASSWORD) -> dict[str, Any]:
    return {"username": username, "password": password, "permissions": list(permissions)}


async def test_a_registered_user_signs_in_and_its_token_works_like_a_key(
    client: httpx.AsyncClient,
) -> None:
    made = await client.post("/auth/register", headers=ADMIN,
                             json=_register("ana", "submit_tasks", "read_tasks"))
    assert made.status_code == 201, made.text
    view = made.json()
    assert (view["username"], view["permissions"], view["status"]) == (
        "ana", ["read_tasks", "submit_tasks"], "active")
    assert view["created_by"]["kind"] == "key" and "password" not in json.dumps(view)

    signed_in = await client.post("/auth/login", json={"username": "ana", "password": PASSWORD})
    assert signed_in.status_code == 200, signed_in.text
    answer = signed_in.json()
    assert set(answer) == {"token", "token_type", "expires_in"}
    assert (answer["token_type"], answer["expires_in"]) == ("bearer", 900)
    token = bearer(answer["token"])
    assert (await client.get("/api/v1/stats", headers=token)).status_code == 200
    submitted = await client.post("/api/v1/tasks", json={"task_type": "echo"}, headers=token)
    assert submitted.status_code == 201, submitted.text
    task_id = submitted.json()["task_id"]
    history = await client.get(f"/api/v1/tasks/{task_id}/history", headers=token)
    assert history.json()[0]["actor"] == {
        "kind": "user", "id": view["id"], "name": "ana", "verified": True}
    forbidden = await client.post(f"/api/v1/tasks/{task_id}/cancel", headers=token)
    body = assert_error(forbidden, 403, "FORBIDDEN")
    assert "user 'ana' lacks the cancel_tasks" in body["error"]


async def test_a_wrong_password_or_an_unknown_user_is_one_and_the_same_401(
    client: httpx.AsyncClient,
) -> None:
    await make_user(client, "ana", "read_tasks")
    answers = [await client.post("/auth/login", json={"username": name, "password": password})
               for name, password in (("ana", "not the password at all"), ("bob", PASSWORD))]
    bodies = [assert_error(a, 401, "UNAUTHORIZED") for a in answers]
    assert bodies[0] == bodies[1] and bodies[0]["error"] == "wrong username or password"


def _segment(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _forgeries(valid: str, now_s: int) -> dict[str, str]:
    """Tokens that must all be refused, by what is wrong with each."""
    claims = jwt.decode(valid, options={"verify_signature": False})
    signed = {"exp": now_s + 600, "iat": now_s, **{k: v for k, v in claims.items()
                                                     if k not in ("exp", "iat")}}
    header, payload, signature = valid.split(".")

    def hs256(key: str | bytes, **changed: Any) -> str:
        return jwt.encode({**signed, **changed}, key, algorithm="HS256")

    warnings.simplefilter("ignore", InsecureKeyLengthWarning)  # short keys are the point
    return {
        "alg none": f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(signed)}.",
        "HS256 keyed with the issuer, a public value": hs256(ISSUER),
        "another algorithm with the right key": jwt.encode(signed, JWT_SECRET, algorithm="HS512"),
        "expired": hs256(JWT_SECRET, iat=now_s - 1000, exp=now_s - 1),
        "wrong iss": hs256(JWT_SECRET, iss="someone-else"),
        "wrong aud": hs256(JWT_SECRET, aud="another-api"),
        "no exp": jwt.encode({k: v for k, v in signed.items() if k != "exp"}, JWT_SECRET),
        "tampered payload": f"{header}.{_segment({**claims, 'name': 'root'})}.{signature}",
        "wrong key": hs256(secrets.token_bytes(32)),
    }


async def test_every_forged_token_is_401(node: EmbeddedNode, client: httpx.AsyncClient) -> None:
    valid = await make_user(client, "ana", "read_tasks")
    assert (await client.get("/api/v1/stats", headers=bearer(valid))).status_code == 200
    now_s = int(clock_of(node).now().timestamp())
    refused = 0
    with warnings.catch_warnings():
        forged = _forgeries(valid, now_s)
    for case, token in forged.items():
        answer = await client.get("/api/v1/stats", headers=bearer(token))
        assert answer.status_code == 401, f"{case}: {answer.status_code} {answer.text}"
        assert answer.headers["www-authenticate"].startswith("Bearer"), case
        refused += 1
    assert refused == 9


async def test_a_token_expires_by_the_nodes_clock(node: EmbeddedNode,
                                                  client: httpx.AsyncClient) -> None:
    token = bearer(await make_user(client, "ana", "read_tasks"))
    clock_of(node).advance(899)
    assert (await client.get("/api/v1/stats", headers=token)).status_code == 200
    clock_of(node).advance(1)
    body = assert_error(await client.get("/api/v1/stats", headers=token), 401, "UNAUTHORIZED")
    assert "expired" in body["error"]


async def test_permission_changes_and_removal_take_effect_on_the_next_request(
    client: httpx.AsyncClient,
) -> None:
    token = bearer(await make_user(client, "ana", "read_tasks"))
    assert (await client.get("/api/v1/keys", headers=token)).status_code == 403
    changed = await client.put("/api/v1/users/ana/permissions", headers=ADMIN,
                               json={"permissions": ["admin"]})
    assert changed.status_code == 200, changed.text
    assert changed.json()["changed_by"]["kind"] == "key"
    assert (await client.get("/api/v1/keys", headers=token)).status_code == 200  # same token
    await client.put("/api/v1/users/ana/permissions", headers=ADMIN,
                     json={"permissions": ["submit_tasks"]})
    assert (await client.get("/api/v1/stats", headers=token)).status_code == 403

    removed = await client.delete("/api/v1/users/ana", headers=ADMIN)
    assert (removed.status_code, removed.json()["status"]) == (200, "removed")
    body = assert_error(await client.get("/api/v1/stats", headers=token), 401, "UNAUTHORIZED")
    assert "removed" in body["error"]
    assert_error(await client.post("/auth/login", json={"username": "ana", "password": PASSWORD}),
                 401, "UNAUTHORIZED")
    # The name may be registered again: a new user, which the old token does not name.
    again = await make_user(client, "ana", "read_tasks")
    assert (await client.get("/api/v1/stats", headers=token)).status_code == 401
    assert (await client.get("/api/v1/stats", headers=bearer(again))).status_code == 200


async def test_users_are_listed_without_passwords_and_managed_by_admins_only(
    client: httpx.AsyncClient,
) -> None:
    token = bearer(await make_user(client, "ana", "read_tasks"))
    listed = await client.get("/api/v1/users", headers=ADMIN)
    assert [u["username"] for u in listed.json()] == ["ana"]
    assert "argon2" not in listed.text and PASSWORD not in listed.text
    assert (await client.get("/api/v1/users", headers=token)).status_code == 403
    assert (await client.delete("/api/v1/users/ana", headers=token)).status_code == 403
    assert_error(await client.post("/auth/register", headers=ADMIN, json=_register("ana")),
                 409, "CONFLICT", "username")
    assert_error(await client.delete("/api/v1/users/bob", headers=ADMIN), 404, "NOT_FOUND")
    assert_error(await client.put("/api/v1/users/bob/permissions", headers=ADMIN,
                                  json={"permissions": ["admin"]}), 404, "NOT_FOUND")
    assert_error(await client.post("/auth/register", json=_register("bob")), 401, "UNAUTHORIZED")


@pytest.mark.parametrize(("body", "field"), [
    (_register("ana", password="too short"), "password"),
    (_register("ana", password="x" * 257), "password"),
    (_register("an a"), "username"),
    (_register("ana", "root"), "permissions[0]"),
    ({"username": "ana"}, "password"),
])
async def test_a_bad_registration_is_400_naming_the_field_never_the_password(
    client: httpx.AsyncClient, body: dict[str, Any], field: str,
) -> None:
    answer = await client.post("/auth/register", headers=ADMIN, json=body)
    assert_error(answer, 400, "INVALID_ARGUMENT", field)
    assert str(body.get("password")) not in answer.text


async def test_open_registration_lets_anyone_register_with_read_tasks_only(
    node: EmbeddedNode, tmp_path: Path,
) -> None:
    async with api_client(node, auth_on(tmp_path, open_registration=True)) as client:
        made = await client.post("/auth/register", json={"username": "ana",
                                                          "password": PASSWORD})
        assert made.status_code == 201, made.text
        assert (made.json()["permissions"], made.json()["created_by"]["kind"]) == (
            ["read_tasks"], "api")
        asked = await client.post("/auth/register", json=_register("bob", "admin"))
        assert_error(asked, 403, "FORBIDDEN", "permissions")
        by_admin = await client.post("/auth/register", headers=ADMIN,
                                     json=_register("carol", "admin"))
        assert by_admin.json()["permissions"] == ["admin"]  # an admin still grants anything
        token = bearer(await login(client, "ana"))
        assert (await client.get("/api/v1/stats", headers=token)).status_code == 200
        assert (await client.post("/api/v1/tasks", json={"task_type": "echo"},
                                  headers=token)).status_code == 403


async def test_failed_logins_are_limited_per_username_on_the_nodes_clock(
    node: EmbeddedNode, client: httpx.AsyncClient,
) -> None:
    await make_user(client, "ana", "read_tasks")
    wrong = {"username": "ana", "password": "not the password at all"}
    for _ in range(USERNAME_BURST):
        assert (await client.post("/auth/login", json=wrong)).status_code == 401
    refused = await client.post("/auth/login", json={"username": "ana", "password": PASSWORD})
    assert_error(refused, 429, "RATE_LIMITED")
    assert refused.headers["retry-after"] == str(round(1 / USERNAME_PER_S))
    clock_of(node).advance(1 / USERNAME_PER_S - 1)
    assert (await client.post("/auth/login", json=wrong)).headers["retry-after"] == "1"
    clock_of(node).advance(1)
    assert await login(client, "ana")  # one attempt back, and a success does not count
    assert await login(client, "ana")
    assert (await client.post("/auth/login", json=wrong)).status_code == 401
    assert (await client.post("/auth/login", json=wrong)).status_code == 429


async def test_failed_logins_are_limited_per_client_address(
    node: EmbeddedNode, tmp_path: Path,
) -> None:
    async with api_client(node, auth_on(tmp_path), client=("192.0.2.7", 4000)) as client:
        await make_user(client, "ana", "read_tasks")
        answers = [(await client.post("/auth/login", json={
            "username": f"guess{i}", "password": PASSWORD})).status_code for i in range(21)]
        assert answers == [401] * 20 + [429]
        refused = await client.post("/auth/login", json={"username": "ana",
                                                         "password": PASSWORD})
        assert_error(refused, 429, "RATE_LIMITED")
    async with api_client(node, auth_on(tmp_path), client=("192.0.2.8", 4000)) as other:
        assert await login(other, "ana")  # another address is not held back


async def test_the_password_reaches_neither_the_logs_nor_the_log(
    node: EmbeddedNode, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "a password nobody may ever see 42"
    token = await make_user(client, "ana", "admin", password=secret)
    await client.post("/auth/login", json={"username": "ana", "password": secret + "x"})
    await client.post("/auth/register", headers=bearer(token),
                      json=_register("bob", password=secret[:5]))
    await client.put("/api/v1/users/ana/permissions", headers=bearer(token),
                     json={"permissions": ["read_tasks"]})
    assert secret not in caplog.text and secret[:5] not in caplog.text
    records = await node.backend.topic(SECURITY).read(0, 0, limit=100)
    assert records and all(secret.encode() not in r.value for r in records)
    (registered,) = [e for r in records if isinstance(e := decode(r.value).event, UserRegistered)]
    assert registered.password_hash.startswith("$argon2id$")
    assert secret not in registered.password_hash


async def test_the_hash_is_argon2id_with_rfc_9106s_parameters() -> None:
    hashed = await Passwords().hash(PASSWORD)
    assert hashed.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert await Passwords().check(hashed, PASSWORD)
    assert not await Passwords().check(hashed, PASSWORD + "!")
    assert not await Passwords().check(None, PASSWORD)


def test_the_login_buckets_of_names_tried_do_not_grow_without_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(logins, "MAX_BUCKETS", 3)
    now = [0.0]
    limits = logins.LoginLimits(lambda: now[0])
    for name in ("a", "b", "c"):
        assert limits.attempt(name, "192.0.2.1") == 0
    now[0] += 3600  # every bucket has refilled: forgetting them changes no answer
    assert limits.attempt("d", "192.0.2.1") == 0
    assert (len(limits.by_username), len(limits.by_address)) == (1, 1)


async def test_a_users_token_opens_a_dashboard_session_that_ends_with_the_user(
    client: httpx.AsyncClient,
) -> None:
    token = await make_user(client, "ana", "read_tasks")
    opened = await client.post("/auth/session", headers=bearer(token))
    assert opened.status_code == 201, opened.text
    assert opened.json()["actor"] == {"kind": "user", "id": opened.json()["actor"]["id"],
                                      "name": "ana", "verified": True}
    assert (await client.get("/api/v1/tasks")).status_code == 200  # by the cookie alone
    assert (await client.delete("/api/v1/users/ana", headers=ADMIN)).status_code == 200
    assert (await client.get("/api/v1/tasks")).status_code == 401
