"""Hostile input gets a clear 4xx and nothing reaches the log (issue 18, items 3, 4, 5, 8):
payloads nested too deep (400 PAYLOAD_TOO_DEEP, no 500 that closes the connection),
payloads that are not UTF-8 (400 MALFORMED_JSON), headers over their limits (431
HEADERS_TOO_LARGE), and error bodies that never name the data folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from jobledger.api.headers import MAX_HEADER_BYTES
from jobledger.schemas import JOBS, decode
from jobledger.schemas.api import DEFAULT_MAX_PAYLOAD_DEPTH
from jobledger.services.node.embedded import EmbeddedNode
from tests.support.api_harness import assert_error, handlers
from tests.support.harness import NodeFactory
from tests.support.live_server import live_server
from tests.support.procs import ServerProcess

TASKS = "/api/v1/tasks"
JSON = {"content-type": "application/json"}


@pytest.fixture
async def node(make_node: NodeFactory) -> EmbeddedNode:
    return await make_node(handlers)




def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def task(payload: str, **fields: Any) -> str:
    extra = "".join(f', "{k}": "{v}"' for k, v in fields.items())
    return f'{{"task_type": "echo", "payload": {payload}{extra}}}'


async def appended(node: EmbeddedNode) -> int:
    """Records on the jobs topic so far."""
    return sum((await node.backend.topic(JOBS).end_offsets()).values())


# -- nesting (item 3) ---------------------------------------------------------------------

async def test_a_payload_nested_deeper_than_the_limit_is_400_payload_too_deep(
    node: EmbeddedNode, client: httpx.AsyncClient,
) -> None:
    limit = DEFAULT_MAX_PAYLOAD_DEPTH
    ok = await client.post(TASKS, content=task(nested(limit)), headers=JSON)
    assert ok.status_code == 201, ok.text
    before = await appended(node)
    for depth in (limit + 1, 981, 100_000):  # 981 was stored; 982 and up were 500s
        body = assert_error(await client.post(TASKS, content=task(nested(depth)), headers=JSON),
                            400, "PAYLOAD_TOO_DEEP", "payload")
        assert f"at most {limit}" in body["error"]
    batch = f'{{"tasks": [{task("1")}, {task(nested(limit + 1))}]}}'
    assert_error(await client.post(f"{TASKS}/batch", content=batch, headers=JSON), 400,
                 "PAYLOAD_TOO_DEEP", "tasks[1].payload")
    schedule = ('{"id": "s", "task_type": "echo", "trigger": "interval", "seconds": 5, '
                f'"payload": {nested(limit + 1)}}}')
    assert_error(await client.post("/api/v1/schedules", content=schedule, headers=JSON), 400,
                 "PAYLOAD_TOO_DEEP", "payload")
    assert await appended(node) == before  # refused before anything was stored


async def test_the_nesting_limit_is_the_node_s_setting(
    node: EmbeddedNode, client: httpx.AsyncClient,
) -> None:
    node.config.max_payload_depth = 3  # --max-payload-depth 3
    assert (await client.post(TASKS, content=task('{"a": [[]]}'), headers=JSON)).status_code == 201
    assert_error(await client.post(TASKS, content=task('{"a": [[[]]]}'), headers=JSON), 400,
                 "PAYLOAD_TOO_DEEP", "payload")


async def test_a_body_too_deep_to_decode_is_a_400_on_a_connection_that_stays_open(
    node: EmbeddedNode,
) -> None:
    async with live_server(node) as base, httpx.AsyncClient(base_url=base) as http:
        refused = await http.post(TASKS, content=task(nested(100_000)), headers=JSON)
        assert_error(refused, 400, "PAYLOAD_TOO_DEEP", "payload")
        assert refused.headers.get("connection") != "close"  # a 500 closed it
        assert (await http.post(TASKS, json={"task_type": "echo"})).status_code == 201


# -- UTF-8 (item 4) -------------------------------------------------------------------------

@pytest.mark.parametrize("payload", [
    b'"caf\xe9"',  # Latin-1
    b'["\xff\xfe"]',
    b'{"a": "\xed\xa0\x80"}',  # a UTF-16 surrogate, encoded as UTF-8 would not
])
async def test_a_payload_that_is_not_utf8_json_is_400_malformed_json(
    node: EmbeddedNode, client: httpx.AsyncClient, payload: bytes,
) -> None:
    before = await appended(node)
    body = b'{"task_type": "echo", "payload": ' + payload + b"}"
    assert_error(await client.post(TASKS, content=body, headers=JSON), 400, "MALFORMED_JSON",
                 "payload")
    batch = b'{"tasks": [{"task_type": "echo"}, ' + body + b"]}"
    assert_error(await client.post(f"{TASKS}/batch", content=batch, headers=JSON), 400,
                 "MALFORMED_JSON", "tasks[1].payload")
    assert await appended(node) == before


async def test_a_payload_of_any_unicode_is_kept_as_sent(client: httpx.AsyncClient) -> None:
    payload = '{"text": "café ☕ \\u00e9 \\ud83d\\ude00 \\"q\\""}'
    created = await client.post(TASKS, content=task(payload).encode(), headers=JSON)
    assert created.status_code == 201, created.text
    got = await client.get(f"{TASKS}/{created.json()['task_id']}")
    assert payload.encode() in got.content


# -- headers (item 5) -----------------------------------------------------------------------

async def test_an_actor_name_over_200_bytes_is_431_and_never_reaches_the_log(
    node: EmbeddedNode, client: httpx.AsyncClient,
) -> None:
    before = await appended(node)
    for name in ("a" * 201, "a" * 10_000_000):
        refused = await client.post(TASKS, json={"task_type": "echo"},
                                    headers={"X-API-Key-Name": name})
        assert_error(refused, 431, "HEADERS_TOO_LARGE", "x-api-key-name")
    assert await appended(node) == before
    created = await client.post(TASKS, json={"task_type": "echo"},
                                headers={"X-API-Key-Name": "b" * 200})
    assert created.status_code == 201
    log = node.backend.topic(JOBS)
    [enqueued] = [env for p, end in (await log.end_offsets()).items()
                  for env in map(decode, [r.value for r in await log.read(p, 0, end)])
                  if env.key == created.json()["task_id"] and env.type == "JobEnqueued"]
    assert enqueued.actor.id == "b" * 200


async def test_headers_over_16_kib_together_are_431_on_every_route(
    client: httpx.AsyncClient,
) -> None:
    big = {f"x-filler-{i}": "f" * 1000 for i in range(MAX_HEADER_BYTES // 1000 + 1)}
    for method, path in (("POST", TASKS), ("GET", "/health"), ("GET", "/nowhere")):
        response = await client.request(method, path, headers=big, json={"task_type": "echo"})
        assert_error(response, 431, "HEADERS_TOO_LARGE", "headers")
    fits = {f"x-filler-{i}": "f" * 1000 for i in range(MAX_HEADER_BYTES // 1000 - 2)}
    assert (await client.get("/health", headers=fits)).status_code == 200


async def test_a_websocket_handshake_with_headers_too_large_is_431(node: EmbeddedNode) -> None:
    async with live_server(node) as base:
        url = base.replace("http", "ws") + "/ws"
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(url, additional_headers={"X-API-Key-Name": "a" * 201})
        assert refused.value.response.status_code == 431
        assert b"HEADERS_TOO_LARGE" in refused.value.response.body


# -- paths in error bodies (item 8) ---------------------------------------------------------

async def test_no_error_body_names_the_data_folder(
    node: EmbeddedNode, client: httpx.AsyncClient, tmp_path: Path,
) -> None:
    # Every append fails while the log has no writer: "<path of the log> is open read-only".
    writer, node.backend.writer = node.backend.writer, None
    try:
        answers = [await client.post(TASKS, json={"task_type": "echo"}),
                   await client.post(f"{TASKS}/batch", json={"tasks": [{"task_type": "echo"}]}),
                   await client.post("/api/v1/queues/q/pause"),
                   await client.post("/api/v1/schedules", json={
                       "id": "s", "task_type": "echo", "trigger": "interval", "seconds": 5})]
    finally:
        node.backend.writer = writer
    for answer in answers:
        body = assert_error(answer, 503, "LOG_UNAVAILABLE")
        assert str(tmp_path) not in answer.text and "/" not in body["error"], body
        assert "j.db" in body["error"]  # named relative to the data folder


# -- the settings, end to end ---------------------------------------------------------------

@pytest.mark.slow
def test_serve_takes_the_nesting_limit_and_the_shortest_interval_from_its_flags(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path / "j.db", "--demo", "--max-payload-depth", "8",
                           "--min-schedule-interval", "30")
    try:
        server.wait_healthy()
        post = server.http.post
        assert post(TASKS, content=task(nested(8)), headers=JSON).status_code == 201
        assert_error(post(TASKS, content=task(nested(9)), headers=JSON), 400, "PAYLOAD_TOO_DEEP",
                     "payload")
        schedule = {"id": "s", "task_type": "echo", "trigger": "interval", "seconds": 29}
        assert_error(post("/api/v1/schedules", json=schedule), 400, "INVALID_TRIGGER", "seconds")
        assert post("/api/v1/schedules", json={**schedule, "seconds": 30}).status_code == 201
    finally:
        server.stop()
