"""GET /api/v1/tasks as the dashboard's tasks table asks it: a time range of enqueue times,
a search by a prefix of the id or the idempotency key, and rows with the retry count and
progress a live update carries too."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from jobledger.services.node.embedded import EmbeddedNode
from tests.support.api_harness import assert_error, handlers, submit
from tests.support.harness import NodeFactory, clock_of, settle


@pytest.fixture
async def node(make_node: NodeFactory) -> EmbeddedNode:
    return await make_node(handlers, concurrency=1)




def newest_first(task_ids: list[str]) -> list[str]:
    """The list's order for tasks enqueued in one millisecond (the manual clock stands
    still between them): created_at, then the id, both descending. A UUIDv7's bits after
    its millisecond are random, so ids of one millisecond do not sort in enqueue order."""
    return sorted(task_ids, reverse=True)


async def listed(client: httpx.AsyncClient, **params: str) -> list[str]:
    response = await client.get("/api/v1/tasks", params=params)
    assert response.status_code == 200, response.text
    return [t["task_id"] for t in response.json()]


async def test_a_time_range_keeps_tasks_enqueued_from_after_until_before(
    node: EmbeddedNode, client: httpx.AsyncClient
) -> None:
    clock = clock_of(node)
    start = clock.now()
    early = [await submit(client, task_type="echo", delay_seconds=3600) for _ in range(2)]
    clock.advance(60)
    late = [await submit(client, task_type="echo", delay_seconds=3600) for _ in range(3)]
    await settle(node)
    middle = (start + timedelta(seconds=30)).isoformat()
    assert await listed(client, created_after=middle) == newest_first(late)
    assert await listed(client, created_before=middle) == newest_first(early)
    until = (start + timedelta(seconds=60)).isoformat()
    assert await listed(client, created_after=start.isoformat(),
                        created_before=until) == newest_first(early)
    response = await client.get("/api/v1/tasks", params={"created_after": "yesterday"})
    assert_error(response, 400, "INVALID_ARGUMENT", "created_after")
    response = await client.get("/api/v1/tasks", params={"created_before": "2026-01-01T00:00:00"})
    assert_error(response, 400, "INVALID_ARGUMENT", "created_before")  # no timezone
    response = await client.get("/api/v1/tasks", params={"created_before": "0.5"})
    assert_error(response, 400, "INVALID_ARGUMENT", "created_before")  # not a Unix time


async def test_search_finds_a_prefix_of_the_id_or_of_the_idempotency_key(
    node: EmbeddedNode, client: httpx.AsyncClient
) -> None:
    reports = [await submit(client, task_type="echo", delay_seconds=3600,
                            idempotency_key=f"report-2026-0{i}") for i in (1, 2)]
    plain = await submit(client, task_type="echo", delay_seconds=3600)
    await settle(node)
    assert await listed(client, search="report-") == newest_first(reports)
    assert await listed(client, search="report-2026-02") == [reports[1]]
    assert await listed(client, search=plain) == [plain]
    assert await listed(client, search=plain[:-1]) == [plain]
    assert await listed(client, search="Report-") == []  # case matters, as in an id
    assert await listed(client, search="report-", status="completed") == []
    assert_error(await client.get("/api/v1/tasks", params={"search": ""}), 400,
                 "INVALID_ARGUMENT", "search")


async def test_a_listed_task_has_its_retry_count_and_progress(
    node: EmbeddedNode, client: httpx.AsyncClient
) -> None:
    await submit(client, task_type="echo", delay_seconds=3600)
    await settle(node)
    [row] = (await client.get("/api/v1/tasks")).json()
    assert (row["retry_count"], row["progress"]) == (
        0, {"processed": 0, "total": None, "failed": 0})


async def test_the_search_uses_an_index_not_a_scan(node: EmbeddedNode) -> None:
    plan = await node.queries.db.execute_fetchall(
        "EXPLAIN QUERY PLAN SELECT job_id FROM jobs WHERE (job_id >= 'a' AND job_id < 'b')"
        " OR (idempotency_key >= 'a' AND idempotency_key < 'b')")
    steps = " | ".join(str(row[-1]) for row in plan)
    assert "jobs_by_key" in steps and "SCAN jobs" not in steps, steps
