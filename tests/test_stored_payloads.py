"""Payloads the log already holds that today's API refuses (issue 18, items 3 and 4): nested
too deep for msgspec's recursion (the old API kept ~975 levels; another producer may write
more), or not UTF-8. Every reader still reads them: the projections, the dispatcher (its
catch-up after the read models are rebuilt too), GET /tasks/{id}, /history, the schedules
API and its WebSocket messages, and replay; each answer is valid UTF-8 JSON."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from jobledger.api.schedules import schedule_updates
from jobledger.schemas import JobEnqueued, ScheduleDefined
from jobledger.schemas.common import uuid7
from jobledger.schemas.schedules import IntervalTrigger, ScheduleDefinition
from jobledger.services.node.embedded import EmbeddedNode, views_path
from jobledger.services.replay.rebuild import checksums, replay
from tests.support.api_harness import api_client, handlers
from tests.support.harness import NodeFactory, settle, wait_until

DEEP_FOR_RECURSION = 3000  # deeper than msgspec decodes from any stack


def deep(depth: int) -> bytes:
    return b'{"data":' + b"[" * depth + b"1" + b"]" * depth + b"}"


async def stored(node: EmbeddedNode, payload: bytes) -> str:
    """A job whose JobEnqueued carries this payload, appended as the old API appended it."""
    job_id = uuid7()
    job = JobEnqueued(job_id=job_id, task_type="echo", payload=msgspec.Raw(payload))
    await node.publisher.publish(job, job_id)
    return job_id


@pytest.mark.parametrize("depth", [975, DEEP_FOR_RECURSION])
async def test_a_stored_deep_payload_is_read_by_every_reader(
    make_node: NodeFactory, tmp_path: Path, depth: int
) -> None:
    node = await make_node(handlers)
    job_id = await stored(node, deep(depth))
    finished = await wait_until(node, job_id, lambda s: s.status in ("completed", "failed"))
    if depth == DEEP_FOR_RECURSION:  # no handler can decode it: failed at once, no retries
        assert finished.status == "failed" and "cannot be decoded" in (finished.error or "")
    async with api_client(node) as client:
        task = await client.get(f"/api/v1/tasks/{job_id}")
        history = await client.get(f"/api/v1/tasks/{job_id}/history")
    assert task.status_code == 200 and deep(depth) in task.content
    assert history.status_code == 200 and history.content.count(b"JobEnqueued") == 2
    assert node.crashed() == []
    await settle(node)
    await make_node.stop(node)

    rebuilt = await replay(node.config.db, tmp_path / "rebuilt.db", show_progress=False)
    assert rebuilt == await checksums(views_path(node.config.db))
    # After an OS crash the read models are rebuilt: the dispatcher's catch-up folds the
    # whole log, this record included (it failed the start-up, which then hung).
    views_path(node.config.db).unlink()
    again = await make_node(handlers)
    assert (await wait_until(again, job_id, finished.status)).error == finished.error


async def test_a_stored_payload_that_is_not_utf8_fails_once_and_reads_as_valid_utf8(
    make_node: NodeFactory,
) -> None:
    node = await make_node(handlers)
    job_id = await stored(node, b'{"name": "caf\xe9"}')  # Latin-1, not UTF-8
    failed = await wait_until(node, job_id, "failed")  # not dead_letter after 3 retries
    assert failed.retry_count == 1 and "cannot be decoded" in (failed.error or "")
    async with api_client(node) as client:
        for path in (f"/api/v1/tasks/{job_id}", f"/api/v1/tasks/{job_id}/history"):
            response = await client.get(path)
            assert response.status_code == 200
            assert "caf\ufffd" in response.content.decode("utf-8")  # valid, one U+FFFD


async def test_a_stored_schedule_with_a_deep_or_non_utf8_payload_is_served(
    make_node: NodeFactory,
) -> None:
    node = await make_node(handlers)
    for schedule_id, payload in (("deep", deep(DEEP_FOR_RECURSION)), ("latin", b'"caf\xe9"')):
        definition = ScheduleDefinition(name=schedule_id, task_type="echo",
                                        trigger=IntervalTrigger(seconds=60),
                                        payload=msgspec.Raw(payload))
        await node.publisher.publish(ScheduleDefined(schedule_id=schedule_id,
                                                     definition=definition), schedule_id)
    await settle(node)
    async with api_client(node) as client:
        listed = await client.get("/api/v1/schedules")
    assert listed.status_code == 200
    assert deep(DEEP_FOR_RECURSION) in listed.content
    assert '"caf\ufffd"' in listed.content.decode("utf-8")
    states = [s for s in [await node.queries.schedule_state(i) for i in ("deep", "latin")] if s]
    messages = await schedule_updates(node.queries, states)  # what the WebSocket sends
    assert [m["schedule"]["id"] for m in messages] == ["deep", "latin"]  # type: ignore[index]
    assert msgspec.json.encode(messages).decode("utf-8")
    assert node.crashed() == []
