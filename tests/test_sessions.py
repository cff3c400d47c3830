"""The dashboard's sign-in (api/session.py, api/cookies.py, services/security/sessions.py):
a key or token exchanged for a session cookie with the right flags and no secret in it,
the CSRF token every cookie-authenticated change needs, a revoked key ending its session
at once, sign-out, the session's lifetime on the node's clock, and the WebSocket signed in
by the cookie only from this server's Origin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from jobledger.api.cookies import COOKIE
from jobledger.services.node.embedded import EmbeddedNode
from jobledger.services.runtime.clock import ManualClock
from jobledger.services.security.sessions import SESSION_LIFETIME_S, Sessions
from tests.support.api_harness import api_client, assert_error, handlers
from tests.support.auth import ADMIN_KEY, auth_on, bearer, make_key, ws_ping
from tests.support.harness import NodeFactory
from tests.support.live_server import live_server

POLICY_VIOLATION = 1008


@pytest.fixture
async def node(make_node: NodeFactory) -> EmbeddedNode:
    return await make_node(handlers)


@pytest.fixture
async def http(node: EmbeddedNode, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(node, auth_on(tmp_path)) as client:
        yield client


async def sign_in(http: httpx.AsyncClient, key: str) -> dict[str, object]:
    response = await http.post("/auth/session", headers=bearer(key))
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def set_cookie_of(response: httpx.Response) -> str:
    (header,) = [v for v in response.headers.get_list("set-cookie") if v.startswith(COOKIE)]
    return header


async def test_signing_in_sets_an_httponly_strict_cookie_that_holds_no_key(
    http: httpx.AsyncClient,
) -> None:
    key = await make_key(http, "read_tasks", name="reader")
    response = await http.post("/auth/session", headers=bearer(key))
    assert response.status_code == 201, response.text
    cookie = set_cookie_of(response)
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path", "samesite", "max-age"} <= flags
    assert "samesite=strict" in cookie.lower() and "path=/" in cookie.lower()
    assert "secure" not in flags  # served over http here: a Secure cookie would never return
    assert key not in cookie and key[3:12] not in cookie
    body = response.json()
    assert body["actor"]["name"] == "reader" and body["permissions"] == ["read_tasks"]
    assert body["auth"] is True and len(body["csrf_token"]) >= 40
    # The cookie alone authenticates reads; GET /auth/session gives the same CSRF token.
    assert (await http.get("/api/v1/tasks")).status_code == 200
    assert (await http.get("/auth/session")).json()["csrf_token"] == body["csrf_token"]


async def test_the_cookie_is_secure_when_served_over_https(node: EmbeddedNode,
                                                           tmp_path: Path) -> None:
    async with api_client(node, auth_on(tmp_path)) as plain:
        http = httpx.AsyncClient(transport=plain._transport, base_url="https://test")
        async with http:
            response = await http.post("/auth/session", headers=bearer(ADMIN_KEY))
            assert "; secure" in set_cookie_of(response).lower()


async def test_a_change_made_with_the_cookie_needs_the_csrf_token(
    http: httpx.AsyncClient,
) -> None:
    csrf = str((await sign_in(http, ADMIN_KEY))["csrf_token"])
    body = {"task_type": "echo", "payload": 1}
    refused = await http.post("/api/v1/tasks", json=body)  # the hot route
    assert_error(refused, 403, "CSRF_FAILED")
    assert "X-CSRF-Token" in refused.json()["error"]
    wrong = await http.post("/api/v1/queues/q/pause", json={}, headers={"X-CSRF-Token": "x"})
    assert_error(wrong, 403, "CSRF_FAILED")
    assert (await http.get("/api/v1/queues")).json() == []  # nothing was paused
    made = await http.post("/api/v1/tasks", json=body, headers={"X-CSRF-Token": csrf})
    assert made.status_code == 201, made.text
    # A bearer credential needs no CSRF token: no other site's page can send one.
    assert (await http.post("/api/v1/tasks", json=body, headers=bearer(ADMIN_KEY))
            ).status_code == 201


async def test_the_session_keeps_the_keys_permissions(http: httpx.AsyncClient) -> None:
    key = await make_key(http, "read_tasks")
    csrf = str((await sign_in(http, key))["csrf_token"])
    task = await http.post("/api/v1/tasks", json={"task_type": "echo"},
                           headers={"X-CSRF-Token": csrf})
    assert_error(task, 403, "FORBIDDEN")


async def test_a_revoked_key_ends_its_session_at_once(http: httpx.AsyncClient) -> None:
    key = await make_key(http, "read_tasks", name="short-lived")
    await sign_in(http, key)
    assert (await http.get("/api/v1/stats")).status_code == 200
    listed = (await http.get("/api/v1/keys", headers=bearer(ADMIN_KEY))).json()
    (key_id,) = [k["id"] for k in listed if k["name"] == "short-lived"]
    assert (await http.delete(f"/api/v1/keys/{key_id}", headers=bearer(ADMIN_KEY))
            ).status_code == 200
    gone = await http.get("/api/v1/stats")
    assert_error(gone, 401, "UNAUTHORIZED")
    assert "revoked" in gone.json()["error"]
    assert (await http.get("/auth/session")).status_code == 401


async def test_signing_out_ends_the_session_on_the_server(http: httpx.AsyncClient) -> None:
    csrf = str((await sign_in(http, ADMIN_KEY))["csrf_token"])
    cookie = http.cookies[COOKIE]
    assert_error(await http.delete("/auth/session"), 403, "CSRF_FAILED")  # not another site
    out = await http.delete("/auth/session", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 204
    assert "max-age=0" in set_cookie_of(out).lower()
    # The old cookie, kept by someone, no longer works.
    again = await http.get("/api/v1/stats", headers={"Cookie": f"{COOKIE}={cookie}"})
    assert_error(again, 401, "UNAUTHORIZED")


async def test_a_session_lasts_twelve_hours_on_the_nodes_clock(
    http: httpx.AsyncClient, node: EmbeddedNode,
) -> None:
    await sign_in(http, ADMIN_KEY)
    assert isinstance(node.clock, ManualClock)
    node.clock.advance(SESSION_LIFETIME_S - 1)
    assert (await http.get("/api/v1/stats")).status_code == 200
    node.clock.advance(1)
    assert_error(await http.get("/api/v1/stats"), 401, "UNAUTHORIZED")


async def test_signing_in_needs_a_credential_that_may_read(http: httpx.AsyncClient) -> None:
    assert_error(await http.post("/auth/session"), 401, "UNAUTHORIZED")
    assert_error(await http.post("/auth/session", headers=bearer("jl_" + "0" * 43)),
                 401, "UNAUTHORIZED")
    submitter = await make_key(http, "submit_tasks")
    assert_error(await http.post("/auth/session", headers=bearer(submitter)), 403, "FORBIDDEN")


async def test_with_auth_off_the_dashboard_needs_no_sign_in(node: EmbeddedNode) -> None:
    async with api_client(node) as http:
        body = (await http.get("/auth/session")).json()
        assert body["auth"] is False and "admin" in body["permissions"]
        signed = await http.post("/auth/session")
        assert signed.status_code == 200 and COOKIE not in signed.headers.get("set-cookie", "")


def test_sessions_are_bounded_oldest_out() -> None:
    sessions = Sessions(lambda: 0, max_sessions=3)
    ids = [sessions.open(key_digest=str(i))[0] for i in range(4)]
    assert len(sessions) == 3
    assert sessions.get(ids[0]) is None and sessions.get(ids[3]) is not None


def test_a_session_from_a_token_ends_with_the_token() -> None:
    sessions = Sessions(lambda: 1_000)
    session_id, session = sessions.open(token="t", ends_at_ms=5_000)
    assert session.expires_at_ms == 5_000


# -- the WebSocket -------------------------------------------------------------------------

async def test_the_websocket_signs_in_by_cookie_from_this_servers_origin_only(
    node: EmbeddedNode, tmp_path: Path,
) -> None:
    async with live_server(node, security=auth_on(tmp_path)) as base:
        async with httpx.AsyncClient(base_url=base) as http:
            await sign_in(http, ADMIN_KEY)
            cookie = {"Cookie": f"{COOKIE}={http.cookies[COOKIE]}"}
        url = base.replace("http://", "ws://") + "/ws"
        for origin in (base, base.replace("http://", "https://")):  # https: a TLS proxy's page
            answer, closed = await ws_ping(url, {**cookie, "Origin": origin})
            assert closed is None and answer is not None and '"pong"' in answer
        for origin in ("http://evil.example", base.replace("127.0.0.1", "localhost"), None):
            headers = {**cookie, **({"Origin": origin} if origin else {})}
            answer, closed = await ws_ping(url, headers)
            assert answer is None and closed is not None, origin
            assert closed.code == POLICY_VIOLATION
            assert "must come from a page of 127.0.0.1:" in closed.reason
        answer, closed = await ws_ping(url, {"Cookie": f"{COOKIE}=forged", "Origin": base})
        assert closed is not None and closed.code == POLICY_VIOLATION
        assert "session has ended" in closed.reason
