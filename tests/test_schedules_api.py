"""/api/v1/schedules through httpx against the ASGI app, over a harness node (ManualClock,
real SQLite files): every route, every status code, the errors naming their field."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from jobledger.api.app import create_app
from jobledger.services.handlers.demo import demo
from jobledger.services.node.embedded import EmbeddedNode
from tests.support.harness import NodeFactory, wait_until
from tests.support.schedules_harness import advance, settle

BASE = "/api/v1/schedules"


@pytest.fixture
async def node(make_node: NodeFactory) -> EmbeddedNode:
    return await make_node(demo)


@pytest.fixture
async def client(node: EmbeddedNode) -> AsyncIterator[httpx.AsyncClient]:
    # httpx's ASGITransport runs no lifespan: the node the test started is put behind the app.
    api = create_app(lambda: node)
    api.state.node = node
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def error(response: httpx.Response, status: int, code: str, field: str | None) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert (body["code"], body["field"]) == (code, field), body
    assert body["error"]
    return str(body["error"])


EVERY_5S = {"id": "tick", "task_type": "echo", "trigger": "interval", "seconds": 5}


async def test_post_answers_201_with_the_schedule(client: httpx.AsyncClient) -> None:
    response = await client.post(BASE, json={
        "id": "nightly", "name": "Nightly cleanup", "task_type": "echo", "payload": {"a": 1},
        "priority": 200, "queue": "maintenance", "timeout_seconds": 60, "max_retries": 2,
        "timezone": "Europe/Berlin", "trigger": "cron", "hour": 3, "minute": 0,
        "day_of_week": "mon-fri",
    })
    assert response.status_code == 201, response.text
    body = response.json()
    assert body == {
        "id": "nightly", "name": "Nightly cleanup", "state": "active",
        "trigger": {"type": "cron", "minute": "0", "hour": "3", "day_of_week": "mon-fri"},
        "timezone": "Europe/Berlin",
        "next_run_time": "2026-01-01T02:00:00.000Z",  # Thu 1 Jan 2026, 03:00 CET
        "last_run_at": None, "last_fire_time": None, "last_status": None,
        "last_task_id": None, "is_running": False, "task_type": "echo", "payload": {"a": 1},
        "priority": 200, "queue": "maintenance", "timeout_seconds": 60.0, "max_retries": 2,
        "misfire_policy": "coalesce", "misfire_grace_time": 60.0, "max_instances": 1,
        "jitter": 0.0, "created_at": "2026-01-01T00:00:00.000Z",
        "updated_at": "2026-01-01T00:00:00.000Z",
    }


@pytest.mark.parametrize(("body", "trigger", "next_run_time"), [
    ({"trigger": "interval", "minutes": 5}, {"type": "interval", "minutes": 5},
     "2026-01-01T00:05:00.000Z"),
    ({"trigger": "cron", "expression": "0 0 9 * * *"},
     {"type": "cron", "expression": "0 0 9 * * *"}, "2026-01-01T09:00:00.000Z"),
    # APScheduler's date format, a wall time of the schedule's timezone.
    ({"trigger": "date", "run_date": "2026-06-01 14:30:00", "timezone": "Europe/Berlin"},
     {"type": "date", "run_date": "2026-06-01T12:30:00Z"}, "2026-06-01T12:30:00.000Z"),
    ({"trigger": "manual"}, {"type": "manual"}, None),
])
async def test_post_takes_each_trigger_kind_in_the_flat_body(
    client: httpx.AsyncClient, body: dict[str, Any], trigger: dict[str, Any],
    next_run_time: str | None,
) -> None:
    response = await client.post(BASE, json={"id": "s", "task_type": "echo", **body})
    assert response.status_code == 201, response.text
    shown = response.json()
    assert (shown["trigger"], shown["next_run_time"]) == (trigger, next_run_time)


async def test_post_of_an_existing_id_is_409_job_exists(client: httpx.AsyncClient) -> None:
    assert (await client.post(BASE, json=EVERY_5S)).status_code == 201
    error(await client.post(BASE, json=EVERY_5S), 409, "JOB_EXISTS", "id")


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"trigger": None}, "trigger", "trigger is required"),
    ({"trigger": "weekly"}, "trigger", "'weekly'"),
    ({"seconds": 0}, "seconds", "above 0"),
    ({"minutes": -1}, "minutes", ">= 0"),
    ({"days": 25520771947}, "days", "<= 36500"),  # a century at most; was a 500 (overflow)
    ({"run_date": "2026-02-01T00:00:00Z"}, "run_date", "not a field of a interval trigger"),
    ({"timezone": "Mars/Olympus"}, "timezone", "unknown timezone"),
    ({"trigger": "cron", "seconds": None, "hour": 25}, "hour", "out of range"),
    ({"trigger": "cron", "seconds": None, "day_of_week": 1}, "day_of_week", "takes names"),
    ({"trigger": "cron", "seconds": None, "expression": "0 0 9 * * * *"}, "expression", "has 7"),
    ({"trigger": "cron", "seconds": None, "expression": "0 * * * *", "hour": 3}, "expression",
     "not both"),
    ({"trigger": "date", "seconds": None, "run_date": "2025-01-01T00:00:00Z"}, "run_date",
     "not in the future"),
    ({"trigger": "date", "seconds": None}, "run_date", "needs run_date"),
])
async def test_a_bad_trigger_is_400_invalid_trigger_naming_the_field(
    client: httpx.AsyncClient, change: dict[str, Any], field: str, message: str,
) -> None:
    body = {**EVERY_5S, **change}
    body = {k: v for k, v in body.items() if v is not None}
    text = error(await client.post(BASE, json=body), 400, "INVALID_TRIGGER", field)
    assert message in text
    assert (await client.get(BASE)).json() == []


@pytest.mark.parametrize("interval", [{"seconds": 0.001}, {"seconds": 0.999}])
async def test_an_interval_under_the_minimum_is_400_invalid_trigger(
    client: httpx.AsyncClient, interval: dict[str, float],
) -> None:
    # A schedule every 0.001 s fired 993 jobs in 5 s (issue 18, item 9).
    text = error(await client.post(BASE, json={**EVERY_5S, **interval}), 400,
                 "INVALID_TRIGGER", "seconds")
    assert "shortest accepted, 1 s" in text
    assert (await client.post(BASE, json={**EVERY_5S, "seconds": 1})).status_code == 201
    error(await client.put(f"{BASE}/tick", json=interval), 400, "INVALID_TRIGGER", "seconds")
    # Other fields of a schedule stored before the minimum can still change.
    assert (await client.put(f"{BASE}/tick", json={"priority": 9})).status_code == 200


async def test_the_minimum_interval_is_the_node_s_setting(
    node: EmbeddedNode, client: httpx.AsyncClient,
) -> None:
    node.schedules.min_interval = 60.0  # --min-schedule-interval 60
    error(await client.post(BASE, json={**EVERY_5S, "seconds": 59}), 400, "INVALID_TRIGGER",
          "seconds")
    ok = {**EVERY_5S, "seconds": None, "minutes": 1}
    assert (await client.post(BASE, json={k: v for k, v in ok.items() if v})).status_code == 201


@pytest.mark.parametrize(("change", "field"), [
    ({"task_type": None}, "task_type"),
    ({"id": None}, "id"),
    ({"id": "has/slash"}, "id"),
    ({"priority": 999}, "priority"),
    ({"max_instances": 0}, "max_instances"),
    ({"jitter": 1e300}, "jitter"),  # its delay would overflow when the schedule fires
    ({"timeout_seconds": 1e300}, "timeout_seconds"),  # as for a task: at most a century
    ({"misfire_policy": "later"}, "misfire_policy"),
    ({"func": "module:task"}, "func"),  # APScheduler's field: jobledger runs task types
])
async def test_other_bad_fields_are_400_invalid_argument_naming_the_field(
    client: httpx.AsyncClient, change: dict[str, Any], field: str,
) -> None:
    body = {k: v for k, v in {**EVERY_5S, **change}.items() if v is not None}
    error(await client.post(BASE, json=body), 400, "INVALID_ARGUMENT", field)


async def test_get_lists_and_shows_schedules_and_404s_an_unknown_one(
    client: httpx.AsyncClient
) -> None:
    await client.post(BASE, json={**EVERY_5S, "id": "b"})
    await client.post(BASE, json={**EVERY_5S, "id": "a"})
    listed = await client.get(BASE)
    assert listed.status_code == 200
    assert [s["id"] for s in listed.json()] == ["a", "b"]
    one = await client.get(f"{BASE}/b")
    assert one.status_code == 200 and one.json()["id"] == "b"
    error(await client.get(f"{BASE}/nope"), 404, "JOB_NOT_FOUND", "id")


async def test_put_changes_only_the_fields_given(client: httpx.AsyncClient) -> None:
    await client.post(BASE, json={**EVERY_5S, "payload": {"keep": True}})
    response = await client.put(f"{BASE}/tick", json={"seconds": 30, "priority": 7})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["trigger"], body["priority"], body["payload"], body["task_type"]) == (
        {"type": "interval", "seconds": 30.0}, 7, {"keep": True}, "echo")
    assert body["next_run_time"] == "2026-01-01T00:00:30.000Z"
    # With `trigger`, the trigger is rebuilt from the fields given.
    cron = await client.put(f"{BASE}/tick", json={"trigger": "cron", "expression": "0 * * * *"})
    assert cron.json()["trigger"] == {"type": "cron", "expression": "0 * * * *"}
    assert (await client.get(f"{BASE}/tick")).json()["trigger"]["type"] == "cron"


async def test_put_errors(client: httpx.AsyncClient) -> None:
    error(await client.put(f"{BASE}/nope", json={"seconds": 3}), 404, "JOB_NOT_FOUND", "id")
    await client.post(BASE, json=EVERY_5S)
    error(await client.put(f"{BASE}/tick", json={"hour": 3}), 400, "INVALID_TRIGGER", "hour")
    error(await client.put(f"{BASE}/tick", json={"id": "other"}), 400, "INVALID_ARGUMENT", "id")
    error(await client.put(f"{BASE}/tick", json={"timezone": "Nowhere/City"}), 400,
          "INVALID_TRIGGER", "timezone")


async def test_delete_answers_removed_then_404_and_the_id_can_be_used_again(
    client: httpx.AsyncClient,
) -> None:
    await client.post(BASE, json=EVERY_5S)
    response = await client.delete(f"{BASE}/tick")
    assert (response.status_code, response.json()) == (200, {"id": "tick", "status": "removed"})
    error(await client.get(f"{BASE}/tick"), 404, "JOB_NOT_FOUND", "id")
    error(await client.delete(f"{BASE}/tick"), 404, "JOB_NOT_FOUND", "id")
    assert (await client.get(BASE)).json() == []
    assert (await client.post(BASE, json=EVERY_5S)).status_code == 201


async def test_pause_and_resume_answer_the_schedule(
    client: httpx.AsyncClient, node: EmbeddedNode
) -> None:
    await client.post(BASE, json=EVERY_5S)
    paused = await client.post(f"{BASE}/tick/pause")
    assert paused.status_code == 200
    assert (paused.json()["state"], paused.json()["next_run_time"]) == ("paused", None)
    await advance(node, 12)
    resumed = await client.post(f"{BASE}/tick/resume")
    assert resumed.status_code == 200
    assert (resumed.json()["state"], resumed.json()["next_run_time"]) == (
        "active", "2026-01-01T00:00:15.000Z")
    for action in ("pause", "resume", "trigger"):
        error(await client.post(f"{BASE}/nope/{action}"), 404, "JOB_NOT_FOUND", "id")


async def test_trigger_runs_the_job_now_and_its_result_comes_through_the_task(
    client: httpx.AsyncClient, node: EmbeddedNode,
) -> None:
    await client.post(BASE, json={"id": "report", "task_type": "echo", "payload": {"r": 1},
                                  "trigger": "manual"})
    response = await client.post(f"{BASE}/report/trigger")
    assert response.status_code == 201
    task_id = response.json()["task_id"]
    assert response.json() == {"task_id": task_id, "schedule_id": "report"}
    await wait_until(node, task_id, "completed")
    await settle(node)
    task = (await client.get(f"/api/v1/tasks/{task_id}")).json()
    assert (task["status"], task["result"]) == ("completed", {"r": 1})
    schedule = (await client.get(f"{BASE}/report")).json()
    assert (schedule["last_task_id"], schedule["last_status"], schedule["is_running"]) == (
        task_id, "completed", False)


async def test_trigger_answers_once_the_task_can_be_read(
    client: httpx.AsyncClient, node: EmbeddedNode, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The jobs model is held back while the schedules model goes on: the trigger waits for
    the job to show, so a GET of its task right after never answers 404 (it did when the
    jobs model lagged behind the schedules model: `schedules trigger --wait` failed)."""
    await client.post(BASE, json={"id": "report", "task_type": "echo", "trigger": "manual"})
    gate = asyncio.Event()
    submit = node.projector.submit

    async def jobs_held(model: str, records: Any) -> None:
        if model == "jobs":
            await gate.wait()
        await submit(model, records)

    monkeypatch.setattr(node.projector, "submit", jobs_held)
    shown = asyncio.get_running_loop().create_future()  # the fire is projected, the job is not
    node.projector.schedule_listeners.append(lambda _: shown.done() or shown.set_result(None))
    trigger = asyncio.ensure_future(client.post(f"{BASE}/report/trigger"))
    try:
        await asyncio.wait_for(shown, 10)
        done, _ = await asyncio.wait({trigger}, timeout=0.2)  # bounded: it must not answer yet
        assert not done
    finally:
        gate.set()  # else the node could not stop
    response = await asyncio.wait_for(trigger, 10)
    assert response.status_code == 201
    task = await client.get(f"/api/v1/tasks/{response.json()['task_id']}")
    assert task.status_code == 200


async def test_a_schedule_shows_its_running_job(
    client: httpx.AsyncClient, node: EmbeddedNode
) -> None:
    await client.post(BASE, json={**EVERY_5S, "task_type": "sleep", "payload": {"seconds": 3600}})
    await advance(node, 5)
    body = (await client.get(f"{BASE}/tick")).json()
    assert (body["is_running"], body["last_status"], body["last_run_at"]) == (
        True, "in_progress", "2026-01-01T00:00:05.000Z")
