"""Who may join /ws (api/ws_auth.py), through a real server: with auth on, the upgrade's
Authorization header or a first {"type": "auth", "token": ...} message within 5 s of the
node's clock, nothing sent before; with auth off, no page of a foreign origin."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import websockets

from jobledger.services.node.embedded import EmbeddedNode
from jobledger.services.security.exposure import ExposureSettings
from tests.support.api_harness import handlers
from tests.support.auth import ADMIN_KEY, auth_on, bearer, make_key
from tests.support.harness import NodeFactory, clock_of
from tests.support.live_server import live_server

POLICY_VIOLATION = 1008
AUTH_TIMEOUT_S = 5.0  # HubConfig's default


@pytest.fixture
async def node(make_node: NodeFactory) -> EmbeddedNode:
    return await make_node(handlers, concurrency=1)


@pytest.fixture
async def secured(node: EmbeddedNode, tmp_path: Path) -> AsyncIterator[str]:
    """The ws:// URL of a live server with auth on."""
    async with live_server(node, security=auth_on(tmp_path)) as base:
        yield base.replace("http://", "ws://") + "/ws"


async def _auth_then_ping(url: str, token: str) -> list[dict[str, object]]:
    async with websockets.connect(url, open_timeout=5) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        answers = [json.loads(await ws.recv())]
        await ws.send('{"type": "ping"}')
        answers.append(json.loads(await ws.recv()))
        return answers


async def test_a_browser_authenticates_with_its_first_message(secured: str) -> None:
    assert await _auth_then_ping(secured, ADMIN_KEY) == [{"type": "authenticated"},
                                                          {"type": "pong"}]


async def test_a_first_message_key_needs_read_tasks(secured: str) -> None:
    base = secured.replace("ws://", "http://").removesuffix("/ws")
    async with httpx.AsyncClient(base_url=base) as http:
        reader = await make_key(http, "read_tasks", name="reader")
        submitter = await make_key(http, "submit_tasks", name="submitter")
        revoked = await make_key(http, "read_tasks", name="gone")
        (gone,) = [k["id"] for k in (await http.get("/api/v1/keys", headers=bearer(ADMIN_KEY))
                                     ).json() if k["name"] == "gone"]
        await http.delete(f"/api/v1/keys/{gone}", headers=bearer(ADMIN_KEY))
    assert (await _auth_then_ping(secured, reader))[1] == {"type": "pong"}
    for token, reason in [(submitter, "read_tasks"), (revoked, "revoked"),
                          ("jl_" + "0" * 43, "not one this server issued"), ("", "")]:
        closed = await _closed_after(secured, json.dumps({"type": "auth", "token": token}))
        assert closed.code == POLICY_VIOLATION and reason in closed.reason, closed


async def _closed_after(url: str, first: str) -> websockets.frames.Close:
    """The close frame the server sends after the socket's first message; nothing else."""
    async with websockets.connect(url, open_timeout=5) as ws:
        await ws.send(first)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            data = await asyncio.wait_for(ws.recv(), 5)
            pytest.fail(f"data before authentication: {data!r:.100}")
    assert closed.value.rcvd is not None
    return closed.value.rcvd


@pytest.mark.parametrize("first", ['{"type": "subscribe", "channel": "stats"}',
                                   '{"type": "ping"}', "not json", '{"type": "auth"}'])
async def test_any_other_first_message_is_closed_with_1008_and_no_data(
    secured: str, first: str,
) -> None:
    closed = await _closed_after(secured, first)
    assert closed.code == POLICY_VIOLATION
    assert '{"type": "auth", "token": <API key>}' in closed.reason


async def test_a_silent_socket_is_closed_after_5_s_of_the_nodes_clock(
    node: EmbeddedNode, secured: str,
) -> None:
    clock = clock_of(node)
    advanced = 0.0
    async with websockets.connect(secured, open_timeout=5) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            for _ in range(100):  # bounded: the close comes once 5 s have passed
                clock.advance(1.0)
                advanced += 1.0
                try:
                    data = await asyncio.wait_for(ws.recv(), 0.05)
                except TimeoutError:
                    continue
                pytest.fail(f"data before authentication: {data!r:.100}")
    # The deadline is set at the accept, which the client saw before the first advance.
    assert advanced >= AUTH_TIMEOUT_S
    rcvd = closed.value.rcvd
    assert rcvd is not None and rcvd.code == POLICY_VIOLATION
    assert "no credential within 5 s" in rcvd.reason


async def test_the_authorization_header_still_works(secured: str) -> None:
    async with websockets.connect(secured, additional_headers=bearer(ADMIN_KEY)) as ws:
        await ws.send('{"type": "ping"}')
        assert json.loads(await ws.recv()) == {"type": "pong"}


# -- auth off: Origin -----------------------------------------------------------------------


@pytest.fixture
async def open_ws(node: EmbeddedNode) -> AsyncIterator[str]:
    """The ws:// URL of a live server with auth off that allows pages of app.example.com."""
    exposure = ExposureSettings(cors_origins=("https://app.example.com",))
    async with live_server(node, exposure=exposure) as base:
        yield base.replace("http://", "ws://") + "/ws"


async def test_with_auth_off_a_foreign_page_cannot_open_the_websocket(open_ws: str) -> None:
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with websockets.connect(open_ws, origin="http://evil.example") as ws:  # type: ignore[arg-type]
            await ws.send('{"type": "subscribe", "channel": "stats"}')
            data = await asyncio.wait_for(ws.recv(), 5)
            pytest.fail(f"data to a foreign page: {data!r:.100}")
    rcvd = closed.value.rcvd
    assert rcvd is not None and rcvd.code == POLICY_VIOLATION and "evil.example" in rcvd.reason


async def test_with_auth_off_its_own_pages_and_allowed_ones_and_other_clients_may(
    open_ws: str,
) -> None:
    own = "http://" + open_ws.removeprefix("ws://").removesuffix("/ws")
    for origin in (None, own, "https://app.example.com"):
        async with websockets.connect(open_ws, origin=origin) as ws:  # type: ignore[arg-type]
            await ws.send('{"type": "auth", "token": "anything"}')  # said to any server
            assert json.loads(await ws.recv()) == {"type": "authenticated"}


async def test_a_host_not_allowed_cannot_open_the_websocket(node: EmbeddedNode) -> None:
    exposure = ExposureSettings(allowed_hosts=frozenset({"127.0.0.1"}))
    async with live_server(node, exposure=exposure) as base:
        url = base.replace("http://", "ws://") + "/ws"
        async with websockets.connect(url) as ws:
            await ws.send('{"type": "ping"}')
            assert json.loads(await ws.recv()) == {"type": "pong"}
        with pytest.raises(websockets.InvalidStatus) as refused:  # Host: localhost:<port>
            await websockets.connect(url.replace("127.0.0.1", "localhost"))
        assert refused.value.response.status_code == 400
        assert b"HOST_NOT_ALLOWED" in refused.value.response.body
