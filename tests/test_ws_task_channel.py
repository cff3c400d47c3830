"""WS /ws, what the dashboard added: the task channel (a task page is told when its task,
runs or log lines change), acknowledgements of several channels subscribed at once, and
task updates carrying a TaskSummary's fields."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from jobledger.api.ws import HubConfig
from jobledger.schemas import JobStatus
from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext
from jobledger.services.node.embedded import EmbeddedNode
from tests.support.harness import NodeFactory, clock_of, enqueue, settle, wait_until
from tests.support.live_server import live_server
from tests.test_ws import connect

app = App()
gates: dict[str, asyncio.Event] = {}


@app.job("echo")
async def echo(ctx: JobContext, payload: Any) -> Any:
    return payload


@app.job("talk")
async def talk(ctx: JobContext, payload: Any) -> None:
    """Logs a line once the test opens gate `said`, and ends once it opens `done`."""
    await gates["said"].wait()
    ctx.log.info("said", n=1)
    await gates["done"].wait()


@pytest.fixture
async def node(make_node: NodeFactory) -> EmbeddedNode:
    gates.update(said=asyncio.Event(), done=asyncio.Event())
    return await make_node(app, concurrency=2)


@pytest.fixture
async def url(node: EmbeddedNode) -> AsyncIterator[str]:
    async with live_server(node, HubConfig(stats_interval_s=0.01)) as base:
        yield base.replace("http://", "ws://") + "/ws"


async def test_a_watched_task_is_told_of_its_changes_and_log_lines_only(
    node: EmbeddedNode, url: str
) -> None:
    watched = await enqueue(node, "talk")
    await wait_until(node, watched, JobStatus.IN_PROGRESS)
    await settle(node)
    conn = await connect(url)
    ack = await conn.subscribe(channel="task", task_id=watched)
    assert ack == {"type": "subscribed", "channel": "task", "task_id": watched}

    other = await enqueue(node, "echo")
    await wait_until(node, other, JobStatus.COMPLETED)
    await settle(node)
    assert await conn.sync() == []  # another task's changes are not told

    gates["said"].set()  # a log line: the logs topic, not a change of the job
    while not await node.queries.run(f"{watched}.1") or not (
            await node.queries.run(f"{watched}.1")).logs:  # type: ignore[union-attr]
        await settle(node)
    assert await conn.sync() == [{"type": "task_changed", "task_id": watched}]

    gates["done"].set()
    await wait_until(node, watched, JobStatus.COMPLETED)
    await settle(node)
    assert await conn.sync() == [{"type": "task_changed", "task_id": watched}]

    await conn.send(type="unsubscribe", channel="task")
    await node.commands.requeue(watched)
    await settle(node)
    assert await conn.sync() == []


async def test_the_task_channel_needs_a_task_id(url: str) -> None:
    conn = await connect(url)
    error = await conn.subscribe(channel="task")
    assert error["type"] == "error" and error["code"] == "INVALID_MESSAGE"
    assert "task_id" in error["error"]


async def test_each_channel_subscribed_at_once_is_acknowledged(url: str) -> None:
    # Sent back to back, before the server's sender has written the first answer: each
    # acknowledgement must arrive (one used to replace the other, losing the cursor).
    conn = await connect(url)
    for message in ({"channel": "tasks"}, {"channel": "schedules"},
                    {"channel": "task", "task_id": "t"}):
        await conn.send(type="subscribe", **message)
    acks = [m for m in await conn.sync() if m["type"] == "subscribed"]
    assert len(acks) == 3
    assert [a for a in acks if "cursor" in a], acks
    assert {a.get("channel") for a in acks} == {None, "schedules", "task"}


async def test_a_task_update_has_the_fields_of_a_task_summary(
    node: EmbeddedNode, url: str
) -> None:
    conn = await connect(url)
    await conn.subscribe()
    job_id = await enqueue(node, "echo", priority=200)
    await wait_until(node, job_id, JobStatus.COMPLETED)
    await settle(node)
    updates = [m["task"] for m in await conn.sync()]
    [summary] = await node.queries.jobs()
    assert updates[-1] == _plain(summary)
    assert updates[-1]["priority"] == 200


def _plain(struct: Any) -> dict[str, Any]:
    return msgspec.json.decode(msgspec.json.encode(struct))  # type: ignore[no-any-return]


async def test_a_worker_heartbeat_alone_pushes_new_stats(node: EmbeddedNode, url: str) -> None:
    # No task changes: only the worker's heartbeat (the workers topic) is new. The
    # overview's workers live and lost come with the stats, so it must be pushed.
    await settle(node)
    conn = await connect(url)
    await conn.send(type="subscribe", channel="stats")
    assert (await conn.recv())["type"] == "stats"
    clock_of(node).advance(node.config.dispatcher.heartbeat_every)
    await settle(node)
    assert (await conn.recv())["type"] == "stats"
