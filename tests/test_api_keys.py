"""/api/v1/keys and authentication with auth on: keys made, listed and revoked by an admin,
the 401 and 403 answers, expiry by the node's clock, and the secret shown only once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from jobledger.schemas import SECURITY, KeyCreated, decode
from jobledger.services.client.async_client import Client
from jobledger.services.client.errors import ClientError, Forbidden, Unauthorized
from jobledger.services.node.embedded import EmbeddedNode
from jobledger.services.security.keys import digest_of
from tests.support.api_harness import api_client, assert_error, handlers
from tests.support.auth import ADMIN_KEY, auth_on, bearer, make_key
from tests.support.harness import NodeFactory, clock_of
from tests.support.live_server import live_server

ADMIN = bearer(ADMIN_KEY)


@pytest.fixture
async def node(make_node: NodeFactory) -> EmbeddedNode:
    return await make_node(handlers)


@pytest.fixture
async def client(node: EmbeddedNode, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(node, auth_on(tmp_path)) as c:
        yield c


def assert_unauthorized(response: httpx.Response, says: str) -> None:
    body = assert_error(response, 401, "UNAUTHORIZED")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert says in body["error"], body


async def test_a_new_key_is_shown_once_and_works(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/keys", headers=ADMIN,
                                 json={"name": "ci", "permissions": ["submit_tasks"]})
    assert response.status_code == 201, response.text
    made = response.json()
    assert set(made) == {"id", "name", "prefix", "permissions", "created_at", "expires_at", "key"}
    key = made["key"]
    assert key.startswith("jl_") and len(key) == 46 and made["prefix"] == key[:11]
    assert (made["name"], made["permissions"], made["expires_at"]) == ("ci", ["submit_tasks"], None)
    submitted = await client.post("/api/v1/tasks", json={"task_type": "echo"}, headers=bearer(key))
    assert submitted.status_code == 201, submitted.text

    listed = (await client.get("/api/v1/keys", headers=ADMIN)).json()
    assert key not in str(listed) and all("key" not in k for k in listed)
    (ci,) = [k for k in listed if k["id"] == made["id"]]
    assert (ci["status"], ci["prefix"], ci["revoked_at"]) == ("active", made["prefix"], None)
    (admin,) = [k for k in listed if k["name"] == "admin (JOBLEDGER_ADMIN_KEY)"]
    assert ci["created_by"] == {"kind": "key", "id": admin["id"], "name": admin["name"],
                                "verified": True}


async def test_the_log_keeps_the_digest_never_the_key(node: EmbeddedNode,
                                                       client: httpx.AsyncClient) -> None:
    key = await make_key(client, "read_tasks")
    log = node.backend.topic(SECURITY)
    records = await log.read(0, 0, limit=100)
    assert all(key.encode() not in r.value and ADMIN_KEY.encode() not in r.value
               for r in records)
    created = [decode(r.value).event for r in records]
    assert {e.digest for e in created if isinstance(e, KeyCreated)} == {
        digest_of(key), digest_of(ADMIN_KEY)}


async def test_no_wrong_or_unknown_credential_is_401_with_a_bearer_challenge(
    client: httpx.AsyncClient,
) -> None:
    assert_unauthorized(await client.get("/api/v1/stats"), "no credential")
    assert_unauthorized(await client.get("/api/v1/stats", headers={"Authorization": "Basic eDp5"}),
                        "not `Bearer <API key or token>`")
    assert_unauthorized(await client.get("/api/v1/stats", headers={"Authorization": "Bearer"}),
                        "not `Bearer <API key or token>`")
    assert_unauthorized(await client.get("/api/v1/stats", headers=bearer("jl_" + "x" * 43)),
                        "not one this server issued")
    assert_unauthorized(await client.get("/api/v1/stats", headers=bearer("x" * 10_000)),
                        "not one this server issued")
    # The scheme is case-insensitive (RFC 7235).
    response = await client.get("/api/v1/stats", headers={"Authorization": f"bearer {ADMIN_KEY}"})
    assert response.status_code == 200


async def test_a_key_without_the_permission_is_403_naming_it(client: httpx.AsyncClient) -> None:
    key = await make_key(client, "submit_tasks", name="producer")
    body = assert_error(await client.get("/api/v1/stats", headers=bearer(key)), 403, "FORBIDDEN")
    assert body["details"] == {"required": "read_tasks"}
    assert "read_tasks" in body["error"] and "producer" in body["error"]
    # Only an admin makes keys.
    refused = await client.post("/api/v1/keys", headers=bearer(key),
                                json={"name": "x", "permissions": ["admin"]})
    assert assert_error(refused, 403, "FORBIDDEN")["details"] == {"required": "admin"}


async def test_a_revoked_key_is_401_at_once_and_revoking_again_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    key = await make_key(client, "read_tasks")
    key_id = next(k["id"] for k in (await client.get("/api/v1/keys", headers=ADMIN)).json()
                  if k["name"] == "test")
    revoked = await client.delete(f"/api/v1/keys/{key_id}", headers=ADMIN)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked" and revoked.json()["revoked_by"]["kind"] == "key"
    assert_unauthorized(await client.get("/api/v1/stats", headers=bearer(key)), "was revoked")
    again = await client.delete(f"/api/v1/keys/{key_id}", headers=ADMIN)
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
    assert_error(await client.delete("/api/v1/keys/nope", headers=ADMIN), 404, "NOT_FOUND", "id")


async def test_a_key_expires_by_the_nodes_clock(node: EmbeddedNode,
                                                client: httpx.AsyncClient) -> None:
    clock = clock_of(node)
    assert_error(await client.post("/api/v1/keys", headers=ADMIN, json={
        "name": "old", "permissions": ["read_tasks"], "expires_at": clock.now().isoformat()}),
        400, "INVALID_ARGUMENT", "expires_at")
    key = await make_key(client, "read_tasks",
                         expires_at=(clock.now() + timedelta(hours=1)).isoformat())
    assert (await client.get("/api/v1/stats", headers=bearer(key))).status_code == 200
    clock.advance(3599.999)
    assert (await client.get("/api/v1/stats", headers=bearer(key))).status_code == 200
    clock.advance(0.001)
    assert_unauthorized(await client.get("/api/v1/stats", headers=bearer(key)), "expired at")
    listed = (await client.get("/api/v1/keys", headers=ADMIN)).json()
    assert [k["status"] for k in listed if k["name"] == "test"] == ["expired"]


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "x", "permissions": ["root"]}, "permissions[0]"),
    ({"name": "x", "permissions": []}, "permissions"),
    ({"name": "", "permissions": ["admin"]}, "name"),
    ({"permissions": ["admin"]}, "name"),
    ({"name": "x", "permissions": ["admin"], "owner": "me"}, "owner"),
    ({"name": "x", "permissions": ["admin"], "expires_at": "2030-01-01T00:00:00"}, "expires_at"),
])
async def test_a_bad_key_request_is_400_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, object], field: str,
) -> None:
    response = await client.post("/api/v1/keys", headers=ADMIN, json=body)
    assert_error(response, 400, "INVALID_ARGUMENT", field)


async def test_the_python_client_sends_its_key_and_manages_keys(node: EmbeddedNode,
                                                                 tmp_path: Path) -> None:
    async with live_server(node, security=auth_on(tmp_path)) as base:
        async with Client(base) as anonymous:
            with pytest.raises(ClientError) as refused:
                await anonymous.stats()
        assert (refused.value.status, refused.value.code) == (401, "UNAUTHORIZED")
        assert isinstance(refused.value, Unauthorized)
        async with Client(base, api_key=ADMIN_KEY) as admin:
            made = await admin.create_key("worker-box", ["submit_tasks"])
            async with Client(base, api_key=made.key) as producer:
                assert await producer.submit("echo", 1)
                with pytest.raises(ClientError) as forbidden:
                    await producer.stats()
                assert forbidden.value.code == "FORBIDDEN"
                assert isinstance(forbidden.value, Forbidden)
            assert "worker-box" in {k.name for k in await admin.keys()}
            assert (await admin.revoke_key(made.id)).status == "revoked"
