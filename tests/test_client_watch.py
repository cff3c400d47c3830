"""Client.watch() (services/client/watch.py): task updates over WS /ws that resume from
their cursor, across a server killed with SIGKILL and restarted on the same log."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobledger import Client, InvalidArgument, ResyncRequired
from jobledger.schemas.api import TaskUpdate
from jobledger.services.client.watch import Watch
from tests.support.api_harness import handlers
from tests.support.harness import NodeFactory
from tests.support.live_server import live_server
from tests.support.procs import ServerProcess, poll

SAFETY = 60.0  # seconds a step may take before the test fails instead of hanging


def offsets(update: TaskUpdate) -> list[int]:
    return [int(part) for part in update.cursor.split(".")[1:]]


async def completions(updates: Watch, want: set[str], seen: list[TaskUpdate]) -> None:
    """Read updates (into `seen`) until every task of `want` has shown as completed."""
    async with asyncio.timeout(SAFETY):
        async for update in updates:
            seen.append(update)
            if want <= {u.task.task_id for u in seen if u.task.status == "completed"}:
                return


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path / "j.db", "--demo", "--lease-seconds", "2")
    try:
        process.wait_healthy()
        yield process
    finally:
        process.stop()


def restart(server: ServerProcess, db: Path) -> ServerProcess:
    """SIGKILL the server, then start another on its log and port."""
    server.kill()
    restarted = ServerProcess(db, "--demo", "--lease-seconds", "2", port=server.port)
    restarted.wait_healthy()
    return restarted


@pytest.mark.slow
async def test_watch_resumes_after_a_kill_without_losing_an_update(
    server: ServerProcess, tmp_path: Path,
) -> None:
    seen: list[TaskUpdate] = []
    async with Client(server.url) as client, client.watch(task_types=["echo", "sleep"]) as updates:
        first = [await client.submit("echo", i) for i in range(10)]
        await completions(updates, set(first), seen)
        # Running when the server dies: their leases expire after the restart, and they
        # run again there.
        running = [await client.submit("sleep", {"seconds": 0.5}) for _ in range(3)]
        # The process steps block: in a thread, so that the client's loop goes on seeing
        # its connections close, as it would in a program doing something else meanwhile.
        await asyncio.to_thread(poll, lambda: all(
            server.task(t)["status"] != "pending" for t in running), SAFETY)
        cursor = updates.cursor
        restarted = await asyncio.to_thread(restart, server, tmp_path / "j.db")
        try:
            # Done while this client is not reading: it must get them on reconnecting.
            later = [await client.submit("echo", i) for i in range(10)]
            await asyncio.to_thread(poll, lambda: all(
                restarted.finished(t) for t in later + running), SAFETY)
            await completions(updates, set(later + running), seen)
        finally:
            restarted.stop()
    completed = {u.task.task_id for u in seen if u.task.status == "completed"}
    assert set(first + running + later) <= completed
    assert cursor is not None and all(a <= b for a, b in zip(
        offsets(seen[0]), offsets(seen[-1]), strict=True))
    positions = [offsets(u) for u in seen]
    assert all(all(x <= y for x, y in zip(a, b, strict=True))
               for a, b in zip(positions, positions[1:], strict=False))  # log order, no rewind


async def test_a_cursor_the_server_cannot_resume_is_resync_required(
    make_node: NodeFactory,
) -> None:
    node = await make_node(handlers, concurrency=1)
    async with live_server(node) as base, Client(base) as client:
        beyond = "0." + ".".join(["999999"] * 4)  # past the end of this log
        with pytest.raises(ResyncRequired) as resync:
            async with client.watch(resume_from=beyond) as updates:
                await anext(updates)
        with pytest.raises(InvalidArgument) as invalid:
            async with client.watch(statuses=["done"]) as updates:
                await anext(updates)
    assert resync.value.cursor == beyond
    assert (invalid.value.code, invalid.value.field) == ("INVALID_FILTER", "statuses")


async def test_watch_from_a_cursor_gets_what_changed_since(make_node: NodeFactory) -> None:
    node = await make_node(handlers, concurrency=1)
    await node.commands.set_paused("default", True)
    async with live_server(node) as base, Client(base) as client:
        async with client.watch() as updates:
            start = updates.cursor
        ids = [await client.submit("echo", i) for i in range(3)]
        async with client.watch(resume_from=start) as updates:
            got = [await anext(updates) for _ in ids]
    assert sorted(u.task.task_id for u in got) == sorted(ids)
    assert all(u.task.status == "pending" for u in got)
