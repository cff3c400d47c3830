"""/api/v1/tasks through the ASGI app: enqueue, batch, look up, list, cancel, requeue, and
every status code each of them can answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest

from jobledger.api.tasks import in_effect
from jobledger.schemas.api import (
    MAX_BATCH_BODY_BYTES,
    MAX_PAYLOAD_BYTES,
    MAX_TASK_BODY_BYTES,
    Progress,
    TaskDetail,
)
from jobledger.schemas.lifecycle import JobStatus
from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext
from jobledger.services.node.embedded import EmbeddedNode
from jobledger.services.security.exposure import ExposureSettings
from tests.support.api_harness import api_client, assert_error, handlers, submit
from tests.support.harness import NodeFactory, advance, clock_of, settle, wait_until


@pytest.fixture
async def node(make_node: NodeFactory) -> EmbeddedNode:
    return await make_node(handlers, concurrency=4)


@pytest.fixture
async def roomy(node: EmbeddedNode) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a server whose --max-body-bytes (1 MiB by default) is over the routes'
    own limits, which are then the ones in force."""
    async with api_client(node, exposure=ExposureSettings(max_body_bytes=2 * MAX_BATCH_BODY_BYTES)
                          ) as client:
        yield client




async def in_state(node: EmbeddedNode, client: httpx.AsyncClient, status: str) -> str:
    """A task id in this state, got there through the API."""
    if status == "scheduled":
        return await submit(client, task_type="echo", delay_seconds=60)
    if status == "pending":
        await client.post("/api/v1/queues/held/pause")
        task_id = await submit(client, task_type="echo", queue="held")
    elif status == "in_progress":
        task_id = await submit(client, task_type="block")
    elif status == "completed":
        task_id = await submit(client, task_type="echo")
    elif status == "failed":
        task_id = await submit(client, task_type="broken")
    else:
        assert status == "cancelled"
        task_id = await in_state(node, client, "scheduled")
        assert (await client.delete(f"/api/v1/tasks/{task_id}")).status_code == 204
    return (await wait_until(node, task_id, status)).job_id


# -- POST /api/v1/tasks ------------------------------------------------------------------


async def test_create_answers_201_with_the_id_and_the_task_is_readable_at_once(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/api/v1/tasks", json={
        "task_type": "echo", "payload": {"hello": "world"}, "priority": 200, "queue": "q1",
        "max_retries": 5, "timeout_seconds": 30,
    })
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"task_id", "status"}
    assert body["status"] in ("pending", "in_progress", "completed")

    task = (await client.get(f"/api/v1/tasks/{body['task_id']}")).json()
    assert task["task_type"] == "echo"
    assert task["payload"] == {"hello": "world"}
    assert (task["priority"], task["queue"], task["max_retries"], task["timeout_seconds"]) == (
        200, "q1", 5, 30.0)


async def test_a_delayed_task_is_created_scheduled(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/tasks", json={"task_type": "echo", "delay_seconds": 60})
    assert response.status_code == 201
    assert response.json()["status"] == "scheduled"


async def test_the_same_idempotency_key_again_answers_200_with_the_same_task(
    client: httpx.AsyncClient,
) -> None:
    body = {"task_type": "echo", "idempotency_key": "report-42", "delay_seconds": 60}
    first = await client.post("/api/v1/tasks", json=body)
    again = await client.post("/api/v1/tasks", json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == {"task_id": first.json()["task_id"], "status": "scheduled"}


@pytest.mark.parametrize(("body", "field"), [
    ({}, "task_type"),
    ({"task_type": ""}, "task_type"),
    ({"task_type": "x" * 201}, "task_type"),
    ({"task_type": 7}, "task_type"),
    ({"task_type": "echo", "priority": 256}, "priority"),
    ({"task_type": "echo", "priority": -1}, "priority"),
    ({"task_type": "echo", "priority": "high"}, "priority"),
    ({"task_type": "echo", "schedule_at": "tomorrow"}, "schedule_at"),
    ({"task_type": "echo", "schedule_at": "2026-01-01T00:00:00"}, "schedule_at"),
    ({"task_type": "echo", "delay_seconds": -1}, "delay_seconds"),
    ({"task_type": "echo", "delay_seconds": 1e12}, "delay_seconds"),
    ({"task_type": "echo", "timeout_seconds": 0}, "timeout_seconds"),
    ({"task_type": "echo", "timeout_seconds": 1e300}, "timeout_seconds"),
    ({"task_type": "echo", "max_retries": -1}, "max_retries"),
    ({"task_type": "echo", "max_retries": 2**64 - 1}, "max_retries"),
    ({"task_type": "echo", "idempotency_key": ""}, "idempotency_key"),
    ({"task_type": "echo", "queue": ""}, "queue"),
    ({"task_type": "echo", "priorty": 3}, "priorty"),
])
async def test_an_invalid_field_answers_400_naming_it(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/api/v1/tasks", json=body)
    error = assert_error(response, 400, "INVALID_ARGUMENT", field)
    assert field in error["error"] or field == "task_type" and "task_type" not in body


@pytest.mark.parametrize("content", [b"{", b"not json", b"\xff\xfe", b""])
async def test_a_body_that_is_not_json_answers_400_malformed_json(
    client: httpx.AsyncClient, content: bytes
) -> None:
    response = await client.post("/api/v1/tasks", content=content,
                                 headers={"content-type": "application/json"})
    assert "not valid JSON" in assert_error(response, 400, "MALFORMED_JSON")["error"]


async def test_a_body_that_is_not_an_object_answers_400(client: httpx.AsyncClient) -> None:
    error = assert_error(await client.post("/api/v1/tasks", json=[1]), 400, "INVALID_ARGUMENT")
    assert "Expected `object`, got `array`" in error["error"]


@pytest.mark.parametrize(("body", "field"), [
    ({"schedule_at": "2030-01-01T00:00:00Z", "delay_seconds": 5}, "schedule_at"),
    ({"schedule_at": "9999-12-31T23:59:59Z"}, "schedule_at"),
    ({"schedule_at": "1969-12-31T23:59:59Z"}, "schedule_at"),
])
async def test_valid_fields_that_cannot_be_applied_answer_422(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/api/v1/tasks", json={"task_type": "echo", **body})
    assert_error(response, 422, "UNPROCESSABLE", field)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_a_body_that_is_not_sent_as_json_answers_415_saying_what_was_sent(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/api/v1/tasks", content=b'{"task_type": "echo"}', headers=headers)
    error = assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE", "content-type")
    assert (content_type or "missing") in error["error"]
    assert "application/json" in error["error"]


async def test_json_with_a_charset_is_json(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/tasks", content=b'{"task_type": "echo"}',
                                 headers={"content-type": "Application/JSON; charset=utf-8"})
    assert response.status_code == 201


async def test_a_payload_over_1_mib_answers_413_naming_the_payload(
    roomy: httpx.AsyncClient,
) -> None:
    client = roomy
    payload = "x" * MAX_PAYLOAD_BYTES  # its JSON adds two quotes: 2 bytes over
    response = await client.post("/api/v1/tasks", json={"task_type": "echo", "payload": payload})
    error = assert_error(response, 413, "PAYLOAD_TOO_LARGE", "payload")
    assert str(MAX_PAYLOAD_BYTES) in error["error"]
    ok = await client.post("/api/v1/tasks", json={"task_type": "echo", "payload": payload[2:]})
    assert ok.status_code == 201


async def test_a_body_over_the_limit_is_refused_on_its_content_length(
    client: httpx.AsyncClient,
) -> None:
    body = b'{"task_type": "echo", "payload": "' + b"x" * MAX_TASK_BODY_BYTES + b'"}'
    response = await client.post("/api/v1/tasks", content=body,
                                 headers={"content-type": "application/json"})
    error = assert_error(response, 413, "PAYLOAD_TOO_LARGE", "body")
    assert f"the body is {len(body)} bytes" in error["error"]


async def test_a_chunked_body_is_read_only_until_it_passes_the_limit(
    client: httpx.AsyncClient,
) -> None:
    chunk = 64 * 1024
    total = 4 * MAX_TASK_BODY_BYTES // chunk
    sent = 0

    async def body() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        nonlocal sent
        yield b'{"task_type": "echo", "payload": "'
        for _ in range(total):
            sent += 1
            yield b"x" * chunk

    response = await client.post("/api/v1/tasks", content=body(),
                                 headers={"content-type": "application/json"})
    assert_error(response, 413, "PAYLOAD_TOO_LARGE", "body")
    assert sent <= MAX_TASK_BODY_BYTES // chunk + 1 < total


# -- POST /api/v1/tasks/batch ------------------------------------------------------------


async def test_a_batch_answers_201_with_the_ids_in_request_order(
    node: EmbeddedNode, client: httpx.AsyncClient
) -> None:
    tasks = [{"task_type": "echo", "payload": i, "delay_seconds": 60} for i in range(3)]
    response = await client.post("/api/v1/tasks/batch", json={"tasks": tasks})
    assert response.status_code == 201
    ids = response.json()["task_ids"]
    assert len(set(ids)) == 3
    for task_id in ids:  # a batch answers once durable, not once projected
        await wait_until(node, task_id, "scheduled")
    payloads = [(await client.get(f"/api/v1/tasks/{i}")).json()["payload"] for i in ids]
    assert payloads == [0, 1, 2]


async def test_a_batch_names_the_tasks_whose_key_named_an_existing_task(
    client: httpx.AsyncClient,
) -> None:
    first = await submit(client, task_type="echo", idempotency_key="k1", delay_seconds=60)
    tasks = [{"task_type": "echo", "idempotency_key": key, "delay_seconds": 60}
             for key in ("k1", "k2", "k2")] + [{"task_type": "echo", "delay_seconds": 60}]
    response = await client.post("/api/v1/tasks/batch", json={"tasks": tasks})
    body = response.json()
    assert response.status_code == 201 and body["duplicates"] == [0, 2]
    assert body["task_ids"][0] == first and body["task_ids"][1] == body["task_ids"][2]
    no_keys = await client.post("/api/v1/tasks/batch", json={"tasks": tasks[3:]})
    assert no_keys.json()["duplicates"] == []


@pytest.mark.parametrize(("tasks", "field"), [
    ([{"task_type": "echo"}, {"task_type": "echo", "priority": 999}], "tasks[1].priority"),
    ([{"task_type": "echo"}, {"task_type": "echo"}, {"payload": 1}], "tasks[2].task_type"),
    ([{"task_type": "echo", "nope": 1}], "tasks[0].nope"),
    ([], "tasks"),
    ([{"task_type": "echo"}] * 1001, "tasks"),
])
async def test_one_invalid_task_rejects_the_whole_batch_naming_its_index(
    client: httpx.AsyncClient, tasks: list[dict[str, Any]], field: str
) -> None:
    response = await client.post("/api/v1/tasks/batch", json={"tasks": tasks})
    assert_error(response, 400, "INVALID_ARGUMENT", field)
    assert (await client.get("/api/v1/tasks")).json() == []  # all or none: none


async def test_a_batch_task_that_cannot_be_applied_answers_422_naming_its_index(
    client: httpx.AsyncClient,
) -> None:
    tasks = [{"task_type": "echo"},
             {"task_type": "echo", "schedule_at": "2030-01-01T00:00:00Z", "delay_seconds": 1}]
    response = await client.post("/api/v1/tasks/batch", json={"tasks": tasks})
    assert_error(response, 422, "UNPROCESSABLE", "tasks[1].schedule_at")


async def test_a_batch_over_its_limits_answers_413(roomy: httpx.AsyncClient) -> None:
    client = roomy
    big = {"task_type": "echo", "payload": "x" * MAX_PAYLOAD_BYTES}
    body = {"tasks": [{"task_type": "echo"}, big]}
    response = await client.post("/api/v1/tasks/batch", json=body)
    assert_error(response, 413, "PAYLOAD_TOO_LARGE", "tasks[1].payload")

    body = b'{"tasks": [' + b'{"task_type": "echo"}, ' * (MAX_BATCH_BODY_BYTES // 20) + b"]}"
    response = await client.post("/api/v1/tasks/batch", content=body,
                                 headers={"content-type": "application/json"})
    assert_error(response, 413, "PAYLOAD_TOO_LARGE", "body")


async def test_a_batch_not_sent_as_json_answers_415(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/tasks/batch", content=b'{"tasks": []}',
                                 headers={"content-type": "text/csv"})
    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")


# -- GET /api/v1/tasks/{task_id} and GET /api/v1/tasks ------------------------------------


async def test_a_task_has_every_documented_field(
    node: EmbeddedNode, client: httpx.AsyncClient
) -> None:
    task_id = await in_state(node, client, "completed")
    task = (await client.get(f"/api/v1/tasks/{task_id}")).json()
    assert {"task_id", "task_type", "queue", "status", "priority", "payload", "created_at",
            "updated_at", "scheduled_at", "started_at", "finished_at", "result", "error",
            "retry_count", "max_retries", "worker_id", "progress"} <= set(task)
    assert task["status"] == "completed"
    assert task["created_at"].endswith("Z") and task["finished_at"].endswith("Z")
    assert set(task["progress"]) == {"processed", "total", "failed"}


async def test_a_task_without_its_own_limits_shows_the_defaults_in_effect(
    node: EmbeddedNode, client: httpx.AsyncClient
) -> None:
    task_id = await in_state(node, client, "completed")
    task = (await client.get(f"/api/v1/tasks/{task_id}")).json()
    assert (task["max_retries"], task["timeout_seconds"]) == (3, 300.0)


async def test_a_task_shows_its_handler_s_limits_and_they_are_the_ones_applied(
    make_node: NodeFactory,
) -> None:
    app = App()

    @app.job("hang", max_retries=0, timeout=2)
    async def hang(ctx: JobContext, payload: Any) -> None:
        await asyncio.Event().wait()

    node = await make_node(app)
    async with api_client(node) as client:
        task_id = await submit(client, task_type="hang")
        await wait_until(node, task_id, "in_progress")
        shown = (await client.get(f"/api/v1/tasks/{task_id}")).json()
        assert (shown["max_retries"], shown["timeout_seconds"]) == (0, 2.0)

        await advance(node, 2.1)
        await wait_until(node, task_id, "dead_letter")  # no retry: max_retries 0 applied
        task = (await client.get(f"/api/v1/tasks/{task_id}")).json()
    assert task["error"] == "TimeoutError: ran past timeout_seconds=2"
    # retry_count counts failed attempts: the one attempt, though no retry followed.
    assert (task["max_retries"], task["timeout_seconds"], task["retry_count"]) == (0, 2.0, 1)


def test_limits_stay_null_where_the_server_does_not_have_the_handler() -> None:
    # A Kafka API node started without --app: the worker that runs the task decides.
    task = TaskDetail(
        task_id="t", task_type="resize", queue="default", status=JobStatus.PENDING,
        priority=128, payload=msgspec.Raw(b"null"), created_at="", updated_at="",
        scheduled_at=None, started_at=None, finished_at=None, result=None, error=None,
        retry_count=0, max_retries=None, timeout_seconds=None, attempt=0, worker_id=None,
        idempotency_key=None, cancel_requested=False, progress=Progress(0, None, 0),
    )
    for app in (App(), handlers):  # no handler of resize in either
        shown = in_effect(task, app)
        assert (shown.max_retries, shown.timeout_seconds) == (None, None)


async def test_an_unknown_task_answers_404(client: httpx.AsyncClient) -> None:
    error = assert_error(await client.get("/api/v1/tasks/nope"), 404, "NOT_FOUND")
    assert "nope" in error["error"]


async def test_the_list_is_newest_first_and_filters_by_status_type_and_queue(
    node: EmbeddedNode, client: httpx.AsyncClient
) -> None:
    ids = []
    for task_type, queue in [("echo", "a"), ("block", "a"), ("echo", "b")]:
        ids.append(await submit(client, task_type=task_type, queue=queue, delay_seconds=60))
        clock_of(node).advance(0.001)  # distinct created_at, in this order
    await wait_until(node, await submit(client, task_type="echo", queue="b"), "completed")

    async def listed(query: str) -> list[str]:
        response = await client.get(f"/api/v1/tasks?{query}")
        assert response.status_code == 200
        return [t["task_id"] for t in response.json()]

    newest_first = await listed("")
    assert newest_first[1:] == ids[::-1]
    assert await listed("status=scheduled") == ids[::-1]
    assert await listed("task_type=block") == [ids[1]]
    assert await listed("queue=a") == [ids[1], ids[0]]
    assert await listed("queue=a&task_type=echo") == [ids[0]]
    assert await listed("status=completed") == newest_first[:1]
    assert await listed("limit=2&offset=1") == newest_first[1:3]
    assert await listed(f"starting_after={ids[2]}") == [ids[1], ids[0]]
    assert await listed(f"queue=b&starting_after={newest_first[0]}") == [ids[2]]
    summary = (await client.get("/api/v1/tasks?limit=1")).json()[0]
    assert set(summary) == {"task_id", "task_type", "queue", "status", "priority", "created_at",
                            "updated_at", "retry_count",
                            "progress"}


async def test_the_list_limit_defaults_to_100_and_allows_1000(
    node: EmbeddedNode, client: httpx.AsyncClient
) -> None:
    tasks = [{"task_type": "echo", "delay_seconds": 60}] * 1000
    assert (await client.post("/api/v1/tasks/batch", json={"tasks": tasks})).status_code == 201
    assert (await client.post("/api/v1/tasks/batch", json={"tasks": tasks[:5]})).status_code == 201
    await settle(node)
    assert len((await client.get("/api/v1/tasks")).json()) == 100
    assert len((await client.get("/api/v1/tasks?limit=1000")).json()) == 1000


async def test_the_status_filter_takes_any_case_and_a_bad_one_lists_the_statuses(
    node: EmbeddedNode, client: httpx.AsyncClient
) -> None:
    scheduled = await submit(client, task_type="echo", delay_seconds=60)
    await settle(node)
    for given in ("scheduled", "SCHEDULED", "Scheduled"):
        listed = (await client.get("/api/v1/tasks", params={"status": given})).json()
        assert [(t["task_id"], t["status"]) for t in listed] == [(scheduled, "scheduled")]
    error = assert_error(await client.get("/api/v1/tasks?status=RUNNING"), 400,
                         "INVALID_ARGUMENT", "status")
    assert "'RUNNING'" in error["error"]
    assert ("scheduled, pending, in_progress, completed, failed, dead_letter, cancelled"
            in error["error"])


@pytest.mark.parametrize(("query", "field"), [
    ("limit=1001", "limit"), ("limit=-1", "limit"), ("limit=ten", "limit"),
    ("offset=-1", "offset"), ("offset=99999999999999999999", "offset"),
    ("status=done", "status"), ("starting_after=nope", "starting_after"),
])
async def test_a_bad_list_parameter_answers_400_naming_it(
    client: httpx.AsyncClient, query: str, field: str
) -> None:
    assert_error(await client.get(f"/api/v1/tasks?{query}"), 400, "INVALID_ARGUMENT", field)


# -- DELETE, cancel, requeue -------------------------------------------------------------


@pytest.mark.parametrize("status", ["scheduled", "pending"])
async def test_delete_cancels_a_waiting_task_with_204(
    node: EmbeddedNode, client: httpx.AsyncClient, status: str
) -> None:
    task_id = await in_state(node, client, status)
    response = await client.delete(f"/api/v1/tasks/{task_id}")
    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(f"/api/v1/tasks/{task_id}")).json()["status"] == "cancelled"


@pytest.mark.parametrize(("method", "action", "status"), [
    *[("DELETE", "", s) for s in ("in_progress", "completed", "failed", "cancelled")],
    *[("POST", "/cancel", s) for s in ("completed", "failed", "cancelled")],
    *[("POST", "/requeue", s) for s in ("scheduled", "pending", "in_progress")],
])
async def test_a_command_the_task_s_state_does_not_allow_answers_409_naming_the_state(
    node: EmbeddedNode, client: httpx.AsyncClient, method: str, action: str, status: str
) -> None:
    task_id = await in_state(node, client, status)
    response = await client.request(method, f"/api/v1/tasks/{task_id}{action}")
    error = assert_error(response, 409, "CONFLICT")
    assert task_id in error["error"]
    assert status.replace("_", " ") in error["error"].replace("_", " ")


async def test_cancel_stops_a_running_task_with_202_and_a_waiting_one_with_204(
    node: EmbeddedNode, client: httpx.AsyncClient
) -> None:
    running = await in_state(node, client, "in_progress")
    response = await client.post(f"/api/v1/tasks/{running}/cancel")
    assert response.status_code == 202
    await wait_until(node, running, "cancelled")

    waiting = await in_state(node, client, "scheduled")
    assert (await client.post(f"/api/v1/tasks/{waiting}/cancel")).status_code == 204
    assert (await client.get(f"/api/v1/tasks/{waiting}")).json()["status"] == "cancelled"


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
async def test_requeue_starts_a_finished_task_over_with_200(
    node: EmbeddedNode, client: httpx.AsyncClient, status: str
) -> None:
    task_id = await in_state(node, client, status)
    response = await client.post(f"/api/v1/tasks/{task_id}/requeue")
    assert response.status_code == 200
    assert response.json() == {"task_id": task_id, "status": "pending"}
    final = "failed" if status == "failed" else "completed"
    assert (await wait_until(node, task_id, final)).attempt >= 1


@pytest.mark.parametrize(("method", "path"), [
    ("DELETE", "/api/v1/tasks/nope"),
    ("POST", "/api/v1/tasks/nope/cancel"),
    ("POST", "/api/v1/tasks/nope/requeue"),
])
async def test_commands_on_an_unknown_task_answer_404(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    assert_error(await client.request(method, path), 404, "NOT_FOUND")
