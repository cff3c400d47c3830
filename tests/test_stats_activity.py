"""GET /api/v1/stats (and so the stats channel), what the dashboard's overview added: per
queue its tasks by status, pause and last hour's runs; last hour's runs per task type; the
last 60 minutes' throughput and pending depth; lost workers. Each is read from the read
models (queue_counts, runs_ended_by, pending_moves), which the log rebuilds."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from jobledger.services.node.embedded import EmbeddedNode
from tests.support.api_harness import handlers, submit
from tests.support.harness import NodeFactory, clock_of, settle, wait_until

MINUTE_MS = 60_000


@pytest.fixture
async def node(make_node: NodeFactory) -> EmbeddedNode:
    return await make_node(handlers, concurrency=4)




def minute_of(moment: datetime) -> str:
    ms = int(moment.timestamp() * 1000) // MINUTE_MS * MINUTE_MS
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def test_queues_task_types_and_the_last_hour_minute_by_minute(
    node: EmbeddedNode, client: httpx.AsyncClient
) -> None:
    clock = clock_of(node)
    start = clock.now()
    assert (await client.post("/api/v1/queues/q/pause")).status_code == 200
    waiting = [await submit(client, task_type="echo", queue="q") for _ in range(3)]
    broken = await submit(client, task_type="broken")  # fails in the first minute
    await wait_until(node, broken, "failed")
    clock.advance(120)
    assert (await client.post("/api/v1/queues/q/resume")).status_code == 200
    for task_id in waiting:
        await wait_until(node, task_id, "completed")
    await settle(node)

    stats = (await client.get("/api/v1/stats")).json()
    assert stats["by_queue"] == {
        "q": {"paused": False, "counts": {"completed": 3},
              "last_hour": {"completed": 3, "failed": 0}},
        "default": {"paused": False, "counts": {"failed": 1},
                    "last_hour": {"completed": 0, "failed": 1}},
    }
    assert stats["last_hour_by_task_type"] == {"echo": {"completed": 3, "failed": 0},
                                               "broken": {"completed": 0, "failed": 1}}
    minutes = stats["per_minute"]
    assert len(minutes) == 60 and minutes[-1]["minute"] == minute_of(clock.now())
    first, second, now = minutes[-3:]
    assert first["minute"] == minute_of(start)
    # In the first minute: three tasks waited on the paused queue; broken came and went.
    assert (first["pending"], first["completed"], first["failed"]) == (3, 0, 1)
    assert (second["pending"], second["completed"], second["failed"]) == (3, 0, 0)
    assert (now["pending"], now["completed"], now["failed"]) == (0, 3, 0)
    assert all(m["pending"] == 0 for m in minutes[:-3])  # before the first task
    assert stats["lost_worker_count"] == 0


async def test_tasks_enqueued_and_picked_in_one_minute_leave_no_pending_row(
    node: EmbeddedNode, client: httpx.AsyncClient
) -> None:
    # A job that went pending and in_progress within a minute moved in and out of the
    # queue in that minute: the net change is zero and no row is kept (as a replay that
    # folds both events in one batch would write none).
    task_id = await submit(client, task_type="echo")
    await wait_until(node, task_id, "completed")
    await settle(node)
    rows = await node.queries.db.execute_fetchall("SELECT * FROM pending_moves")
    assert rows == []
