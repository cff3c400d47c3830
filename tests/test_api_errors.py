"""The error contract: every error is JSON {"error", "code", "field", "details"} with the
right status, unknown paths and methods included, and a bug is a logged 500 INTERNAL.
Through the ASGI app, then the same contract over a real `jobledger serve` process."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobledger.api.app import create_app
from jobledger.api.errors import CODES
from jobledger.schemas.api import MAX_TASK_BODY_BYTES
from jobledger.services.handlers.app import App
from jobledger.services.node.embedded import EmbeddedNode
from tests.support.api_harness import assert_error, demo_server
from tests.support.harness import NodeFactory
from tests.support.procs import ServerProcess

DOCS = Path(__file__).parent.parent / "docs" / "api.md"


@pytest.fixture
async def node(make_node: NodeFactory) -> EmbeddedNode:
    return await make_node(App())




@pytest.mark.parametrize("path", ["/nope", "/api/v1", "/api/v1/tasks/", "/api/v1/tasks/x/y/z"])
async def test_a_path_with_no_endpoint_answers_404_json(
    client: httpx.AsyncClient, path: str
) -> None:
    error = assert_error(await client.get(path), 404, "NOT_FOUND")
    assert path in error["error"]


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("PUT", "/api/v1/tasks", "GET, HEAD, POST"),
    ("GET", "/api/v1/tasks/batch", None),  # /tasks/{task_id} answers GET: 404, no such task
    ("PATCH", "/api/v1/tasks/abc", "DELETE, GET, HEAD"),
    ("GET", "/api/v1/tasks/abc/cancel", "POST"),
    ("DELETE", "/api/v1/stats", "GET, HEAD"),
    ("POST", "/health", "GET, HEAD"),
])
async def test_a_method_the_path_does_not_answer_is_405_json_with_every_allowed_method(
    client: httpx.AsyncClient, method: str, path: str, allowed: str | None
) -> None:
    response = await client.request(method, path)
    if allowed is None:
        assert_error(response, 404, "NOT_FOUND")
        return
    error = assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == allowed
    assert method in error["error"] and allowed in error["error"]


async def test_plain_http_to_the_websocket_path_answers_426_or_405(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/ws")
    assert "WebSocket" in assert_error(response, 426, "UPGRADE_REQUIRED")["error"]
    assert response.headers["upgrade"] == "websocket"
    response = await client.post("/ws")
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "GET"


async def test_a_bug_is_a_500_internal_that_is_logged_and_leaks_nothing(
    node: EmbeddedNode, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: Request) -> Response:
        raise RuntimeError("secret detail")

    api = create_app(lambda: node)
    api.router.routes.append(Route("/broken", broken))
    transport = httpx.ASGITransport(app=api, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with caplog.at_level(logging.ERROR, logger="jobledger.api"):
            response = await client.get("/broken")
    error = assert_error(response, 500, "INTERNAL")
    assert "secret" not in error["error"]
    [record] = [r for r in caplog.records if r.name == "jobledger.api"]
    assert "GET /broken failed" in record.getMessage()
    assert record.exc_info is not None and "secret detail" in str(record.exc_info[1])


def test_every_code_is_upper_snake_and_docs_api_md_lists_it_with_its_status() -> None:
    table = DOCS.read_text().split("## Errors", 1)[1]
    for code, status in CODES.items():
        assert re.fullmatch(r"[A-Z]+(_[A-Z]+)*", code)
        assert re.search(rf"\| {status} \| `{code}` \|", table), f"{code} missing in docs/api.md"


# -- over a real `jobledger serve` on a loopback port --------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with demo_server(tmp_path_factory.mktemp("live")) as process:
        yield process


def test_live_create_read_and_idempotent_repeat(server: ServerProcess) -> None:
    body = {"task_type": "echo", "payload": [1], "idempotency_key": "live-1", "delay_seconds": 600}
    first = server.http.post("/api/v1/tasks", json=body)
    again = server.http.post("/api/v1/tasks", json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    task_id = first.json()["task_id"]
    assert again.json()["task_id"] == task_id
    assert server.http.get(f"/api/v1/tasks/{task_id}").json()["payload"] == [1]


def test_live_bad_bodies_answer_400_415_422_naming_what_is_wrong(server: ServerProcess) -> None:
    http = server.http
    assert_error(http.post("/api/v1/tasks", json={"task_type": "echo", "priority": 300}),
                 400, "INVALID_ARGUMENT", "priority")
    assert_error(http.post("/api/v1/tasks", content=b"{nope",
                           headers={"content-type": "application/json"}),
                 400, "MALFORMED_JSON")
    error = assert_error(http.post("/api/v1/tasks", content=b"task_type=echo",
                                   headers={"content-type": "application/x-www-form-urlencoded"}),
                         415, "UNSUPPORTED_MEDIA_TYPE")
    assert "application/x-www-form-urlencoded" in error["error"]
    assert_error(http.post("/api/v1/tasks", json={"task_type": "echo", "delay_seconds": 1,
                                                   "schedule_at": "2030-01-01T00:00:00Z"}),
                 422, "UNPROCESSABLE", "schedule_at")
    assert_error(http.post("/api/v1/tasks/batch", json={"tasks": [{"task_type": "echo"}, {}]}),
                 400, "INVALID_ARGUMENT", "tasks[1].task_type")


def test_live_bodies_over_the_limit_answer_413_with_or_without_a_content_length(
    server: ServerProcess,
) -> None:
    headers = {"content-type": "application/json"}
    big = b"x" * (MAX_TASK_BODY_BYTES + 1)
    assert_error(server.http.post("/api/v1/tasks", content=big, headers=headers),
                 413, "PAYLOAD_TOO_LARGE", "body")

    def chunked() -> Iterator[bytes]:
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]

    assert_error(server.http.post("/api/v1/tasks", content=chunked(), headers=headers),
                 413, "PAYLOAD_TOO_LARGE", "body")
    assert server.http.get("/health").status_code == 200  # the server is fine after both


def test_live_unknown_paths_and_methods_answer_json(server: ServerProcess) -> None:
    assert_error(server.http.get("/api/v2/tasks"), 404, "NOT_FOUND")
    assert_error(server.http.get("/api/v1/tasks/nope"), 404, "NOT_FOUND")
    response = server.http.put("/api/v1/tasks", json={})
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "GET, HEAD, POST"
