"""/api/v1/stats, /api/v1/workers, /api/v1/queues (pause, resume) and /health through the
ASGI app."""

from __future__ import annotations

import httpx
import pytest

from jobledger.schemas import JOBS
from jobledger.schemas.common import to_ms
from jobledger.services.log.protocol import Entry
from jobledger.services.node.embedded import EmbeddedNode
from tests.support.api_harness import assert_error, handlers, submit
from tests.support.harness import NodeFactory, clock_of, dispatcher_of, settle, wait_until


@pytest.fixture
async def node(make_node: NodeFactory) -> EmbeddedNode:
    return await make_node(handlers, concurrency=3)




async def test_stats_count_tasks_by_status_band_and_type(
    node: EmbeddedNode, client: httpx.AsyncClient
) -> None:
    await wait_until(node, await submit(client, task_type="echo"), "completed")
    await wait_until(node, await submit(client, task_type="block"), "in_progress")
    await submit(client, task_type="echo", delay_seconds=60)
    await client.post("/api/v1/queues/held/pause")
    await submit(client, task_type="echo", queue="held", priority=200)
    await settle(node)

    response = await client.get("/api/v1/stats")
    assert response.status_code == 200
    stats = response.json()
    assert {k: stats[k] for k in ("pending_count", "in_progress_count", "scheduled_count",
                                  "completed_count", "dead_letter_count", "worker_count")} == {
        "pending_count": 1, "in_progress_count": 1, "scheduled_count": 1,
        "completed_count": 1, "dead_letter_count": 0, "worker_count": 1,
    }
    assert stats["completed_last_hour"] == 1
    assert stats["failed_last_hour"] == 0
    assert stats["queue_depth_by_priority"] == {"high": 1, "normal": 0, "low": 0}
    assert stats["by_task_type"] == {
        "echo": {"completed": 1, "scheduled": 1, "pending": 1}, "block": {"in_progress": 1}}
    assert isinstance(stats["avg_processing_time_ms"], float)


async def test_workers_lists_the_node_s_worker_and_its_running_tasks(
    node: EmbeddedNode, client: httpx.AsyncClient
) -> None:
    running = await submit(client, task_type="block")
    await wait_until(node, running, "in_progress")
    clock_of(node).advance(dispatcher_of(node).config.heartbeat_every)  # a heartbeat reports it
    await settle(node)

    response = await client.get("/api/v1/workers")
    assert response.status_code == 200
    [worker] = response.json()
    assert worker["worker_id"] == dispatcher_of(node).config.worker_id
    assert worker["status"] == "alive"
    assert worker["current_tasks"] == [running]
    assert worker["concurrency"] == 3
    reported = {"registered_at", "last_heartbeat", "cpu_usage_percent", "memory_usage_mb"}
    assert reported <= set(worker)


async def test_a_paused_queue_keeps_its_tasks_pending_until_resumed(
    node: EmbeddedNode, client: httpx.AsyncClient
) -> None:
    response = await client.post("/api/v1/queues/emails/pause")
    assert response.status_code == 200
    assert response.json() == {"queue": "emails", "paused": True}
    task_id = await submit(client, task_type="echo", queue="emails")
    await settle(node)
    assert (await client.get(f"/api/v1/tasks/{task_id}")).json()["status"] == "pending"
    assert (await client.get("/api/v1/queues")).json() == [
        {"queue": "emails", "paused": True, "pending": 1, "scheduled": 0, "in_progress": 0,
         "pending_by_priority": {"high": 0, "normal": 1, "low": 0}}]

    response = await client.post("/api/v1/queues/emails/resume")
    assert response.json() == {"queue": "emails", "paused": False}
    await wait_until(node, task_id, "completed")
    assert (await client.get("/api/v1/queues")).json() == [
        {"queue": "emails", "paused": False, "pending": 0, "scheduled": 0, "in_progress": 0,
         "pending_by_priority": {"high": 0, "normal": 0, "low": 0}}]


async def test_the_queues_list_counts_waiting_and_running_tasks_per_queue(
    node: EmbeddedNode, client: httpx.AsyncClient
) -> None:
    await wait_until(node, await submit(client, task_type="block", queue="a"), "in_progress")
    await submit(client, task_type="echo", queue="b", delay_seconds=60)
    await settle(node)
    none = {"high": 0, "normal": 0, "low": 0}
    assert (await client.get("/api/v1/queues")).json() == [
        {"queue": "a", "paused": False, "pending": 0, "scheduled": 0, "in_progress": 1,
         "pending_by_priority": none},
        {"queue": "b", "paused": False, "pending": 0, "scheduled": 1, "in_progress": 0,
         "pending_by_priority": none},
    ]


async def test_a_queue_counts_its_pending_tasks_per_priority_band(
    node: EmbeddedNode, client: httpx.AsyncClient
) -> None:
    await client.post("/api/v1/queues/held/pause")
    for priority in (255, 170, 169, 85, 84, 0, 0):
        await submit(client, task_type="echo", queue="held", priority=priority)
    await settle(node)
    [held] = (await client.get("/api/v1/queues")).json()
    assert held["pending_by_priority"] == {"high": 2, "normal": 2, "low": 3}
    stats = (await client.get("/api/v1/stats")).json()
    assert stats["queue_depth_by_priority"] == held["pending_by_priority"]


@pytest.mark.parametrize("action", ["pause", "resume"])
async def test_a_queue_name_over_200_characters_answers_400(
    client: httpx.AsyncClient, action: str
) -> None:
    response = await client.post(f"/api/v1/queues/{'q' * 201}/{action}")
    assert_error(response, 400, "INVALID_ARGUMENT", "queue")


async def test_health_is_200_healthy_with_the_node_s_figures(
    node: EmbeddedNode, client: httpx.AsyncClient
) -> None:
    await client.post("/api/v1/queues/held/pause")
    await submit(client, task_type="echo", queue="held")
    await settle(node)
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "healthy", "is_leader": True, "connected_workers": 1, "pending_tasks": 1,
        "projection_lag_ms": 0, "quarantined_records": 0,
    }


async def test_health_is_503_degraded_once_the_projections_lag_beyond_the_bound(
    node: EmbeddedNode, client: httpx.AsyncClient
) -> None:
    clock = clock_of(node)
    node.config.max_projection_lag_ms = 1000
    await node.projector.stop()  # the projections fall behind from here on
    log = node.backend.topic(JOBS)
    await log.append([Entry("k", b"{}", 0, timestamp_ms=to_ms(clock.now()))])

    clock.advance(1.0)  # lag 1000 ms: at the bound, still healthy
    response = await client.get("/health")
    assert (response.status_code, response.json()["projection_lag_ms"]) == (200, 1000)

    clock.advance(0.001)
    response = await client.get("/health")
    assert response.status_code == 503
    assert response.json()["status"] == "degraded"
    assert response.json()["projection_lag_ms"] == 1001
    assert response.json()["reason"] == "projections: 1,001 ms behind the log, more than 1,000"

    node.projector.start()  # caught up again: healthy (the bad record is quarantined)
    await settle(node)
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json()["quarantined_records"] == 1
