"""The permission matrix, generated from the route table (api/app.py:ENDPOINTS): every route
declares what it needs, and every route is called, through a real server with auth on,
with no credential, a wrong one, a key of each permission, a revoked key, the token of a
user of each permission, and the token of a removed user.

A route that needs a permission answers 401 without a valid credential, 403 naming the
permission to a key without it, and anything but 401/403 to a key with it (or with admin);
a PUBLIC route answers everyone alike. The WebSocket is held to the same rule, refused by
closing with 1008."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from jobledger.api.app import ENDPOINTS
from jobledger.api.auth import PUBLIC, REGISTRATION
from jobledger.api.openapi import Endpoint, Reply
from jobledger.schemas import Permission
from jobledger.services.node.embedded import EmbeddedNode
from tests.support.api_harness import handlers
from tests.support.auth import ADMIN_KEY, auth_on, bearer, make_key, make_user, ws_ping
from tests.support.harness import NodeFactory
from tests.support.live_server import live_server

DOCS = Path(__file__).parent.parent / "docs" / "security.md"
POLICY_VIOLATION = 1008
WRONG = "jl_" + "0" * 43  # well formed, never issued
PARAM = re.compile(r"{(\w+)(:\w+)?}")
# A connection per request: a request on a kept-alive connection to uvicorn took 44 ms here
# (a delayed ACK), one on a fresh connection 4 ms.
FRESH = httpx.Limits(max_keepalive_connections=0)
ROUTES = list(ENDPOINTS)


def _id(e: Endpoint) -> str:
    return f"{e.method} {e.path}"


def test_every_route_declares_what_it_needs() -> None:
    undeclared = [_id(e) for e in ENDPOINTS if e.access is None]
    assert undeclared == [], "declare a Permission or PUBLIC on these Endpoints (api/auth.py)"


def test_a_route_without_a_declaration_is_never_served() -> None:
    async def handler(request: object) -> None: ...

    entry = Endpoint("GET", "/anything", handler, "x", replies={200: Reply("x")})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="GET /anything declares no access"):
        entry.route()


def test_docs_security_md_lists_every_route_with_what_it_needs() -> None:
    table = DOCS.read_text().split("## Permissions", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `(\w+)` \| `([^`]+)` \| `(\w+)` \|$", table, re.M))
    assert listed == {(e.method, e.path, str(e.access)) for e in ENDPOINTS}


def test_the_public_routes_are_the_docs_health_and_dashboard_page_only() -> None:
    # The dashboard's page and files hold no data: it reads everything through the API.
    public = sorted(_id(e) for e in ENDPOINTS if e.access == PUBLIC)
    # DELETE /auth/session signs out: it only ever ends the caller's own session.
    assert public == ["DELETE /auth/session", "GET /", "GET /dashboard",
                      "GET /dashboard/assets/{name:path}", "GET /docs", "GET /health",
                      "GET /openapi.json", "POST /auth/login"]


# One server for the module: the routes are called many times, and nothing they do to its
# state (a queue paused, a task that failed validation) changes what auth answers.
SHARED = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory
                 ) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """A live server with auth on; the credentials to call it with, by name."""
    folder = tmp_path_factory.mktemp("permissions")
    nodes = NodeFactory(folder)
    try:
        async with _serving(await nodes(handlers), folder) as served:
            yield served
    finally:
        await nodes.close()


@asynccontextmanager
async def _serving(node: EmbeddedNode, folder: Path) -> AsyncIterator[tuple[str, dict[str, str]]]:
    async with live_server(node, security=auth_on(folder)) as base:
        async with httpx.AsyncClient(base_url=base) as http:
            keys = {p.value: await make_key(http, p.value, name=p.value) for p in Permission}
            revoked_key = await make_key(http, "admin", name="revoked")
            listed = (await http.get("/api/v1/keys", headers=bearer(ADMIN_KEY))).json()
            (revoked_id,) = [k["id"] for k in listed if k["name"] == "revoked"]
            gone = await http.delete(f"/api/v1/keys/{revoked_id}", headers=bearer(ADMIN_KEY))
            assert gone.status_code == 200
            users = {f"user {p.value}": await make_user(http, f"u-{p.value}", p.value)
                     for p in Permission}
            removed_user = await make_user(http, "removed", "admin")
            gone = await http.delete("/api/v1/users/removed", headers=bearer(ADMIN_KEY))
            assert gone.status_code == 200
        yield base, {"none": "", "wrong": WRONG, "revoked": revoked_key, **keys, **users,
                     "removed user": removed_user}


def _needs(access: object) -> object:
    """What a route needs of a caller here (the server has no --open-registration)."""
    return Permission.ADMIN if access == REGISTRATION else access


def _allowed(access: object, credential: str) -> bool | None:
    """True: must be let through; False: 403; None: 401."""
    if access == PUBLIC:
        return True
    if credential in ("none", "wrong", "revoked", "removed user"):
        return None
    return credential.removeprefix("user ") in (_needs(access), Permission.ADMIN)


async def _call(http: httpx.AsyncClient, e: Endpoint, key: str) -> httpx.Response:
    path = PARAM.sub("x", e.path)
    headers = bearer(key) if key else {}
    body = {} if e.body is not None else None
    return await http.request(e.method, path, json=body, headers=headers)


@SHARED
@pytest.mark.parametrize("endpoint", [e for e in ROUTES if e.handler is not None], ids=_id)
async def test_each_route_lets_through_exactly_the_keys_that_hold_its_permission(
    server: tuple[str, dict[str, str]], endpoint: Endpoint,
) -> None:
    base, credentials = server
    async with httpx.AsyncClient(base_url=base, limits=FRESH) as http:
        for name, key in credentials.items():
            response = await _call(http, endpoint, key)
            allowed = _allowed(endpoint.access, name)
            where = f"{_id(endpoint)} with {name}: {response.status_code} {response.text[:200]}"
            if allowed:
                assert response.status_code not in (401, 403), where
            elif allowed is None:
                assert response.status_code == 401, where
                assert response.json()["code"] == "UNAUTHORIZED", where
                assert response.headers["www-authenticate"].startswith("Bearer"), where
            else:
                assert response.status_code == 403, where
                assert response.json()["details"] == {"required": _needs(endpoint.access)}, where


@SHARED
@pytest.mark.parametrize("endpoint", [e for e in ROUTES if e.handler is None], ids=_id)
async def test_the_websocket_lets_through_exactly_the_keys_that_hold_its_permission(
    server: tuple[str, dict[str, str]], endpoint: Endpoint,
) -> None:
    base, credentials = server
    url = base.replace("http://", "ws://") + endpoint.path
    for name, key in credentials.items():
        answer, closed = await ws_ping(url, bearer(key) if key else {})
        where = f"/ws with {name}"
        if _allowed(endpoint.access, name):
            assert closed is None and answer is not None, where
        else:
            assert closed is not None and closed.code == POLICY_VIOLATION, where
            assert closed.reason, where  # says why: no credential, revoked, lacks read_tasks
