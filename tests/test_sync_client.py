"""SyncClient (services/client/sync_client.py): the Client's calls, blocking, from plain
threads, against a real uvicorn server that runs in the test's own loop (the blocking
calls run in other threads, as a script's or a Flask view's would)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from jobledger import NotFound, SyncClient
from jobledger.schemas.api import TaskDetail, TaskSummary, TaskUpdate
from tests.support.api_harness import echo, handlers
from tests.support.harness import NodeFactory
from tests.support.live_server import live_server


def script(base: str) -> dict[str, Any]:
    """What a script does with a SyncClient; what it saw."""
    with SyncClient(base) as client:
        task_id = client.submit("echo", {"a": 1}, priority=9)
        done = client.wait(task_id, interval=0.01)
        listed = list(client.list(page_size=1))
        with pytest.raises(NotFound) as missing:
            client.get("nope")
        stats = client.stats()
    return {"done": done, "listed": listed, "missing": missing.value, "stats": stats}


async def test_a_sync_client_in_a_plain_thread(make_node: NodeFactory) -> None:
    node = await make_node(handlers, concurrency=1)
    async with live_server(node) as base:
        seen = await asyncio.to_thread(script, base)
    done = seen["done"]
    assert isinstance(done, TaskDetail) and (done.status, done.result) == ("completed", {"a": 1})
    assert [type(t) for t in seen["listed"]] == [TaskSummary]
    assert seen["listed"][0].task_id == done.task_id
    assert seen["missing"].status == 404 and seen["stats"].completed_count == 1
    assert "jobledger-client" not in {t.name for t in threading.enumerate()}  # close() stopped it


def in_a_running_loop(base: str) -> str:
    """A SyncClient called where the thread runs an event loop (an async view, a
    notebook): asyncio.run() would refuse there; the client's private loop does not."""

    async def view() -> str:
        with SyncClient(base) as client:
            return client.get(client.submit("echo")).status

    return asyncio.run(view())


def shared(client: SyncClient, n: int) -> list[str]:
    """n submits from several threads at once through one SyncClient."""
    ids: list[str] = []
    lock = threading.Lock()

    def submit() -> None:
        for _ in range(n):
            task_id = client.submit("echo")
            with lock:
                ids.append(task_id)

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return ids


async def test_one_sync_client_for_many_threads_and_inside_a_loop(make_node: NodeFactory) -> None:
    node = await make_node(handlers, concurrency=1)
    await node.commands.set_paused("default", True)
    async with live_server(node) as base:
        status = await asyncio.to_thread(in_a_running_loop, base)
        with SyncClient(base) as client:
            ids = await asyncio.to_thread(shared, client, 25)
    assert status == "pending" and len(set(ids)) == 100


def watched(base: str, count: int) -> tuple[list[TaskUpdate], str | None, str]:
    """The first updates of a SyncClient's watch, its cursor, and the id of the task the
    handler's own enqueue helper enqueued."""
    with SyncClient(base) as client, client.watch(statuses=["completed"]) as updates:
        task_id = echo.enqueue(client, {"hi": 1}, priority=3)  # with a SyncClient: the id
        seen = [next(updates) for _ in range(count)]
        return seen, updates.cursor, task_id


async def test_watch_and_enqueue_through_a_sync_client(make_node: NodeFactory) -> None:
    node = await make_node(handlers, concurrency=1)
    async with live_server(node) as base:
        seen, cursor, task_id = await asyncio.to_thread(watched, base, 1)
    assert [(u.task.task_id, u.task.status) for u in seen] == [(task_id, "completed")]
    assert cursor == seen[-1].cursor
