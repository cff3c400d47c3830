"""--retain-finished: finished tasks' rows leave the read models after the age, archived
first if asked; the log, the counts and as_of keep them (issue 22, section 5)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobledger.schemas.common import iso_ms
from jobledger.services.node.embedded import EmbeddedNode, NodeConfig
from jobledger.services.runtime.clock import ManualClock
from jobledger.services.runtime.dispatcher import DispatcherConfig
from tests.support.api_harness import api_client, handlers
from tests.support.harness import settle, wait_until


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[EmbeddedNode]:
    config = NodeConfig(db=tmp_path / "j.db", retain_finished=timedelta(hours=1),
                        archive_to=tmp_path / "archive.jsonl",
                        dispatcher=DispatcherConfig(shutdown_grace_seconds=0.0))
    # Ahead of the wall clock, which stamps the log's records (as_of times match them).
    node = EmbeddedNode(config, handlers, clock=ManualClock(datetime.now(UTC) + timedelta(days=1)))
    await node.start()
    yield node
    await node.stop()


async def test_finished_tasks_are_archived_then_pruned_after_the_age(
    node: EmbeddedNode, tmp_path: Path,
) -> None:
    assert node.retention is not None
    async with api_client(node) as client:
        done = (await client.post("/api/v1/tasks", json={"task_type": "echo", "payload": 7}
                                  )).json()["task_id"]
        await wait_until(node, done, "completed")
        waiting = (await client.post("/api/v1/tasks", json={
            "task_type": "echo", "delay_seconds": 86_400})).json()["task_id"]
        await settle(node)
        recorded = int(time.time() * 1000)  # after every record of the run, by their clock
        assert await node.retention.prune() == 0  # not an hour old yet
        node.clock.advance(3601)  # type: ignore[attr-defined]  # a ManualClock
        await node.retention.prune()  # (or the hourly pass the clock just woke did)
        assert node.retention.pruned == 1
        assert (await client.get(f"/api/v1/tasks/{done}")).status_code == 404
        assert (await client.get(f"/api/v1/tasks/{waiting}")).status_code == 200
        assert (await client.get("/api/v1/stats")).json()["completed_count"] == 1
        assert len((await client.get(f"/api/v1/tasks/{done}/history")).json()) >= 3
        then = await client.get(f"/api/v1/tasks/{done}",
                                params={"as_of": iso_ms(recorded)})
        assert then.status_code == 200 and then.json()["status"] == "completed"
        listed = await client.get("/api/v1/tasks", params={"as_of": iso_ms(recorded)})
        assert {t["task_id"] for t in listed.json()} == {done, waiting}
        assert listed.headers["X-As-Of-Finished-Listed-Since"] == iso_ms(recorded - 3_600_000)
    (line,) = (tmp_path / "archive.jsonl").read_text().splitlines()
    archived = json.loads(line)
    assert archived["task"]["task_id"] == done and archived["task"]["result"] == 7
    assert [run["status"] for run in archived["runs"]] == ["COMPLETED"]
