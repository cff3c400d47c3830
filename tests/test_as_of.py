"""`as_of`: the read models as they were at a past moment equal what the live ones
answered at that moment (issue 22, section 1)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import pytest

from jobledger.schemas import JOBS
from jobledger.schemas.codec import decode_batch
from jobledger.schemas.common import iso_ms
from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext
from jobledger.services.history.position import format_position
from jobledger.services.history.snapshots import snapshots_dir
from jobledger.services.node.embedded import EmbeddedNode, NodeConfig, views_path
from jobledger.services.runtime.clock import ManualClock
from jobledger.services.runtime.dispatcher import DispatcherConfig
from jobledger.services.runtime.projector import TOPIC_OF_MODEL
from jobledger.services.write.producer import task_request
from tests.support.api_harness import api_client, assert_error
from tests.support.harness import advance, seeded_backoff, settle

MOMENTS = 200
app = App()


@app.job("echo")
async def echo(ctx: JobContext, payload: Any) -> Any:
    ctx.log.info("echo", n=payload)
    ctx.progress(1, 1)
    return payload


@app.job("flaky")
async def flaky(ctx: JobContext, payload: Any) -> None:
    if ctx.attempt < 2:
        raise RuntimeError("first attempt fails")


@app.job("block")
async def block(ctx: JobContext, payload: Any) -> None:
    await asyncio.Event().wait()  # runs until cancelled or its lease is lost


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[EmbeddedNode]:
    # A day ahead of the wall clock, which stamps the log's records: an as_of of any
    # record's time is then never in the node's future.
    clock = ManualClock(datetime.now(UTC) + timedelta(days=1))
    # Deltas every 40 records, a new base (copied while deltas go on) after 30 jobs rows.
    config = NodeConfig(db=tmp_path / "j.db", snapshot_every_events=40,
                        snapshot_base_after_rows=30, dispatcher=DispatcherConfig(
        concurrency=2, backoff=seeded_backoff(), shutdown_grace_seconds=0.0, lease_seconds=6))
    node = EmbeddedNode(config, app, clock=clock)
    await node.start()
    yield node
    await node.stop()


async def _position(node: EmbeddedNode) -> str:
    ends = {topic: await node.backend.topic(topic).end_offsets()
            for topic in TOPIC_OF_MODEL.values()}
    return format_position(ends)


async def _step(rng: random.Random, node: EmbeddedNode, client: httpx.AsyncClient,
                tasks: list[str]) -> None:
    """One random thing that appends events of some kind, then the clock moves on."""
    kind = rng.choice(["enqueue", "enqueue", "flaky", "block", "delayed", "cancel", "requeue",
                       "pause", "resume", "schedule", "unschedule", "wait"])
    if kind in ("enqueue", "flaky", "block", "delayed"):
        body: dict[str, Any] = {"task_type": {"delayed": "echo", "enqueue": "echo"}.get(kind, kind),
                                "payload": rng.randrange(100), "priority": rng.randrange(256),
                                "queue": rng.choice(["a", "b"])}
        if kind == "delayed":
            body["delay_seconds"] = 5
        created = await client.post("/api/v1/tasks", json=body)
        assert created.status_code == 201, created.text
        tasks.append(created.json()["task_id"])
    elif kind in ("cancel", "requeue") and tasks:
        await client.post(f"/api/v1/tasks/{rng.choice(tasks)}/{kind}")
    elif kind in ("pause", "resume"):
        await client.post(f"/api/v1/queues/{rng.choice(['a', 'b'])}/{kind}")
    elif kind == "schedule":
        await client.post("/api/v1/schedules", json={
            "id": f"s{rng.randrange(3)}", "task_type": "echo", "trigger": "interval",
            "seconds": 3})
    elif kind == "unschedule":
        await client.delete(f"/api/v1/schedules/s{rng.randrange(3)}")
    await advance(node, rng.choice([0.5, 1.0, 2.0]), step=0.5)
    await settle(node)


_READS = ["/api/v1/workers", "/api/v1/queues", "/api/v1/schedules", "/api/v1/tasks?limit=500",
          "/api/v1/tasks?status=pending&limit=100", "/api/v1/tasks?status=in_progress&queue=a"]


async def test_as_of_equals_the_live_state_recorded_at_each_of_200_moments(
    node: EmbeddedNode,
) -> None:
    rng = random.Random(22)
    tasks: list[str] = []
    recorded = []
    async with api_client(node) as client:
        for _ in range(MOMENTS):
            await _step(rng, node, client, tasks)
            picked = rng.sample(tasks, min(3, len(tasks)))
            recorded.append(await _record(node, client, picked))
        taken = node.history.snapshots.taken  # type: ignore[union-attr]
        assert len({s.base.number for s in taken}) >= 3
        assert len([s for s in taken if s.seq]) >= 5
        kinds = await _event_kinds(node)
        assert {"JobEnqueued", "JobPicked", "JobSucceeded", "JobFailed", "JobCancelled",
                "JobRequeued", "JobDue", "QueuePaused", "QueueResumed", "ScheduleDefined",
                "ScheduleFired", "ScheduleRemoved", "JobLogged", "WorkerStarted"} <= kinds
        by_time = 0
        for position, time_ms, live, picked in recorded:
            await _check(client, position, live, picked)
            if await _alone_in_its_millisecond(node, position, time_ms):
                answer = await client.get("/api/v1/stats", params={"as_of": iso_ms(time_ms)})
                assert answer.headers["X-As-Of-Position"] == position
                by_time += 1
        assert by_time >= MOMENTS // 2


async def _record(node: EmbeddedNode, client: httpx.AsyncClient,
                  picked: list[str]) -> tuple[str, int, dict[str, Any], list[str]]:
    """The live answers and the log position they reflect. A handler still running may
    append its outcome while they are read: then they are read again.

    The position is read first and the projections awaited up to exactly it: caught_up()
    reads each topic's end in turn, so a record appended to a topic it had already checked
    (a pick and outcome of a task fired by a schedule) was in a position read after it but
    could still be unapplied when the live answers were read; nothing being appended after,
    the check below passed, and the recorded live state was behind its position (a CI run
    saw a `default` queue with 1 pending task live that its as_of, rightly, no longer had)."""
    while True:
        position = await _position(node)
        assert await _applied(node, position), "the projections never caught up"
        moment = await node.history.moment(position)
        live: dict[str, Any] = {path: (await client.get(path)).json() for path in _READS}
        live["stats"] = await node.queries.stats(moment.time_ms)
        for task_id in picked:
            answer = await client.get(f"/api/v1/tasks/{task_id}")
            live[task_id] = answer.json() if answer.status_code == 200 else 404
        assert await node.caught_up(30), "the projections never caught up"
        if await _position(node) == position:
            return position, moment.time_ms, live, picked


async def _applied(node: EmbeddedNode, position: str, timeout: float = 30) -> bool:
    """Wait until the projections have applied every record before the position."""
    offsets = {name: int(offset) for name, offset in
               (part.split(":") for part in position.split(",") if part)}
    try:
        async with asyncio.timeout(timeout):
            for model, topic in TOPIC_OF_MODEL.items():
                for name, offset in offsets.items():
                    if name.split("/")[0] == topic:
                        await node.projector.wait_for(model, int(name.split("/")[1]), offset - 1)
    except TimeoutError:
        return False
    return True


async def _check(client: httpx.AsyncClient, position: str, live: dict[str, Any],
                 picked: list[str]) -> None:
    for path in _READS:
        answer = await client.get(_as_of(path, position))
        assert answer.status_code == 200, answer.text
        assert answer.headers["X-As-Of-Position"] == position
        assert answer.json() == live[path], (path, position)
    stats = await client.get("/api/v1/stats", params={"as_of": position})
    assert stats.json() == msgspec.to_builtins(live["stats"]), position
    for task_id in picked:
        answer = await client.get(f"/api/v1/tasks/{task_id}", params={"as_of": position})
        assert (answer.json() if answer.status_code == 200 else 404) == live[task_id]


def _as_of(path: str, as_of: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}as_of={quote(as_of)}"


async def _alone_in_its_millisecond(node: EmbeddedNode, position: str, time_ms: int) -> bool:
    """Is every record after the position stamped later than its newest record? (Then an
    as_of of that time names exactly the position.)"""
    offsets = {name: int(offset) for name, offset in
               (part.split(":") for part in position.split(",") if part)}
    for topic in TOPIC_OF_MODEL.values():
        log = node.backend.topic(topic)
        for partition, end in (await log.end_offsets()).items():
            offset = offsets.get(f"{topic}/{partition}", 0)
            if offset < end:
                (first_after,) = await log.read(partition, offset, limit=1)
                if first_after.timestamp_ms <= time_ms:
                    return False
    return True


async def _event_kinds(node: EmbeddedNode) -> set[str]:
    kinds: set[str] = set()
    for topic in TOPIC_OF_MODEL.values():
        log = node.backend.topic(topic)
        for partition, end in (await log.end_offsets()).items():
            envs, _ = decode_batch(await log.read(partition, 0, limit=end))
            kinds.update(type(env.event).__name__ for env in envs)
    return kinds


async def test_before_the_first_event_the_state_is_empty(node: EmbeddedNode) -> None:
    async with api_client(node) as client:
        await client.post("/api/v1/tasks", json={"task_type": "echo", "payload": 1})
        await settle(node)
        year_1 = await client.get("/api/v1/stats", params={"as_of": "0001-01-01T00:00:00+01:00"})
        assert year_1.headers["X-As-Of-Time"] == "1970-01-01T00:00:00.000Z"
        stats = await client.get("/api/v1/stats", params={"as_of": "2001-01-01T00:00:00Z"})
        assert stats.status_code == 200
        assert stats.json()["completed_count"] == stats.json()["pending_count"] == 0
        assert stats.headers["X-As-Of-Position"] == ""
        tasks = await client.get("/api/v1/tasks", params={"as_of": "2001-01-01T00:00:00Z"})
        assert tasks.json() == []


async def test_a_time_in_the_future_or_a_position_past_the_end_is_a_400(
    node: EmbeddedNode,
) -> None:
    future = (node.clock.now() + timedelta(seconds=1)).isoformat()
    async with api_client(node) as client:
        for path in ("/api/v1/stats", "/api/v1/tasks", "/api/v1/tasks/x", "/api/v1/queues",
                     "/api/v1/workers", "/api/v1/schedules", "/api/v1/schedules/s"):
            assert_error(await client.get(path, params={"as_of": future}), 400,
                         "AS_OF_IN_FUTURE", "as_of")
        assert_error(await client.get("/api/v1/stats", params={"as_of": f"{JOBS}/0:99999"}),
                     400, "AS_OF_IN_FUTURE", "as_of")
        for bad in ("yesterday", "2026-01-01T00:00:00", "jobs/9:1", "nope/0:1", ""):
            assert_error(await client.get("/api/v1/stats", params={"as_of": bad}), 400,
                         "INVALID_ARGUMENT", "as_of")


async def test_snapshots_of_another_log_are_removed_at_start(tmp_path: Path) -> None:
    config = NodeConfig(db=tmp_path / "j.db", snapshot_every_events=2, run_workers=False)
    async with EmbeddedNode(config, app, clock=ManualClock()) as node:
        await node.commands.enqueue([task_request("echo", n) for n in range(3)],
                                    wait_visible=True)
        await node.caught_up(5)
        async with asyncio.timeout(10):  # the snapshot is taken in a thread
            while not node.history.snapshots.taken:  # type: ignore[union-attr]
                await asyncio.sleep(0.01)
    snapshots = snapshots_dir(views_path(config.db))
    assert list(snapshots.glob("*.db"))
    for name in ("j.db", "j.views.db"):
        (tmp_path / name).unlink()  # a new log, and read models rebuilt over it
    async with EmbeddedNode(config, app, clock=ManualClock()) as node:
        assert node.history.snapshots.taken == []  # type: ignore[union-attr]
    assert not list(snapshots.glob("*.db"))


async def test_the_log_span_runs_from_the_oldest_record_to_the_servers_time(
    node: EmbeddedNode,
) -> None:
    async with api_client(node) as client:
        await client.post("/api/v1/tasks", json={"task_type": "echo", "payload": 1})
        await settle(node)
        oldest = []
        for topic in TOPIC_OF_MODEL.values():
            log = node.backend.topic(topic)
            for partition in range(log.partitions):
                oldest += [r.timestamp_ms for r in await log.read(partition, 0, limit=1)]
        span = (await client.get("/api/v1/history/span")).json()
        assert span == {"first_time": iso_ms(min(oldest)),
                        "now": iso_ms(int(node.clock.now().timestamp() * 1000))}
        # Before it, nothing; at the server's time, the task.
        before = iso_ms(min(oldest) - 1)
        assert (await client.get("/api/v1/stats", params={"as_of": before})).headers[
            "X-As-Of-Position"] == ""
        now = await client.get("/api/v1/tasks", params={"as_of": span["now"]})
        assert len(now.json()) == 1
