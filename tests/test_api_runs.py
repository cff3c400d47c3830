"""The audit trail and runs endpoints: /tasks/{id}/history, /tasks/{id}/runs, /runs, /runs/{id}."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from jobledger.api.app import create_app
from jobledger.services.handlers.app import App, PermanentError
from jobledger.services.handlers.context import JobContext
from jobledger.services.node.embedded import EmbeddedNode
from tests.support.harness import NodeFactory, advance, enqueue, history, settle, wait_until

app = App()


@app.job("flaky", max_retries=3)
async def flaky(ctx: JobContext, payload: Any) -> str:
    ctx.log.info("attempt starting", attempt=ctx.attempt)
    if ctx.attempt < 2:
        raise RuntimeError("first attempt fails")
    ctx.progress(3, total=3)
    return "ok"


@app.job("broken")
async def broken(ctx: JobContext, payload: Any) -> None:
    raise PermanentError("never works")


@pytest.fixture
async def node(make_node: NodeFactory) -> EmbeddedNode:
    return await make_node(app, concurrency=2)


@pytest.fixture
async def client(node: EmbeddedNode) -> AsyncIterator[httpx.AsyncClient]:
    api = create_app(lambda: node)
    api.state.node = node  # started by the fixture, not by the lifespan
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def _retried_job(node: EmbeddedNode) -> str:
    job_id = await enqueue(node, "flaky")
    await wait_until(node, job_id, "scheduled")  # first attempt failed, backing off
    await advance(node, 60)
    await wait_until(node, job_id, "completed")
    return job_id


async def test_history_is_every_event_of_the_task_in_log_order(
    node: EmbeddedNode, client: httpx.AsyncClient
) -> None:
    job_id = await _retried_job(node)
    response = await client.get(f"/api/v1/tasks/{job_id}/history")
    assert response.status_code == 200
    entries = response.json()
    recorded = await history(node, job_id)
    assert [e["event_id"] for e in entries] == [env.id for env in recorded]
    assert [e["type"] for e in entries][:3] == ["JobEnqueued", "JobPicked", "JobFailed"]
    assert entries[-1]["type"] == "JobSucceeded"
    assert [e["offset"] for e in entries] == sorted(e["offset"] for e in entries)
    picked = [e for e in entries if e["type"] == "JobPicked"]
    assert [e["attempt"] for e in picked] == [1, 2]
    assert all(e["worker_id"] for e in picked)
    assert entries[0]["event"]["task_type"] == "flaky"
    assert entries[0]["time"].endswith("Z")


async def test_history_of_an_unknown_task_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/tasks/nope/history")
    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


async def test_runs_of_a_task_one_per_attempt(
    node: EmbeddedNode, client: httpx.AsyncClient
) -> None:
    job_id = await _retried_job(node)
    runs = (await client.get(f"/api/v1/tasks/{job_id}/runs")).json()
    assert [(r["attempt"], r["status"]) for r in runs] == [(1, "FAILED"), (2, "COMPLETED")]
    assert runs[0]["error"] == "RuntimeError: first attempt fails"
    assert runs[1]["progress"] == {"processed": 3, "total": 3, "failed": 0}
    assert runs[1]["duration_ms"] is not None and runs[1]["duration_ms"] >= 0
    assert (await client.get("/api/v1/tasks/nope/runs")).status_code == 404


async def test_a_run_shows_its_logs_in_order(node: EmbeddedNode, client: httpx.AsyncClient) -> None:
    job_id = await _retried_job(node)
    response = await client.get(f"/api/v1/runs/{job_id}.2")
    assert response.status_code == 200
    run = response.json()
    assert run["status"] == "COMPLETED" and run["task_id"] == job_id
    assert [(log["level"], log["message"], log["details"]) for log in run["logs"]] == [
        ("INFO", "attempt starting", {"attempt": 2})
    ]
    assert all(log["created_at"].endswith("Z") for log in run["logs"])
    missing = await client.get(f"/api/v1/runs/{job_id}.9")
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"


async def test_runs_list_filters_by_type_and_status(
    node: EmbeddedNode, client: httpx.AsyncClient
) -> None:
    flaky_id = await _retried_job(node)
    broken_id = await enqueue(node, "broken")
    await wait_until(node, broken_id, "failed")
    await settle(node)

    everything = (await client.get("/api/v1/runs")).json()
    assert {(r["task_id"], r["attempt"]) for r in everything} == {
        (flaky_id, 1), (flaky_id, 2), (broken_id, 1)
    }
    failed = (await client.get("/api/v1/runs", params={"status": "FAILED"})).json()
    assert {(r["task_id"], r["attempt"]) for r in failed} == {(flaky_id, 1), (broken_id, 1)}
    for given in ("failed", "Failed"):  # run statuses are UPPERCASE; a filter takes any case
        again = (await client.get("/api/v1/runs", params={"status": given})).json()
        assert again == failed and {r["status"] for r in again} == {"FAILED"}
    of_type = (await client.get("/api/v1/runs", params={"task_type": "broken"})).json()
    assert [r["task_id"] for r in of_type] == [broken_id]
    one = (await client.get("/api/v1/runs", params={"limit": 1})).json()
    assert len(one) == 1


@pytest.mark.parametrize("params, field", [
    ({"status": "sideways"}, "status"), ({"limit": "1001"}, "limit"), ({"limit": "x"}, "limit"),
])
async def test_runs_list_rejects_bad_filters(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    response = await client.get("/api/v1/runs", params=params)
    assert response.status_code == 400
    assert response.json()["field"] == field
    if field == "status":
        assert "RUNNING, COMPLETED, FAILED, CANCELLED" in response.json()["error"]
