"""A full disk stops writes for a while, and nothing for good (issue 18, 2): the projections
and the dispatcher retry with a backoff by the node's clock and resume by themselves once
space is back, the first error is the one reported, /health says why it is degraded, and
nothing acknowledged is lost.

The disk fills without root: SQLite's max_page_count, lowered on the read-model file or on
the log's write connection, makes every write that needs a new page fail with SQLITE_FULL,
as a full disk does; raising it again frees the space. The end-to-end test fills a real
(small tmpfs) disk under a real `jobledger serve` when this machine lets it mount one."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobledger.projections.store import ReadModelStore
from jobledger.schemas import JOBS, JobStatus
from jobledger.services.log.protocol import Entry, LogError
from jobledger.services.node.embedded import EmbeddedNode
from jobledger.services.runtime.faults import FIRST_RETRY_S
from tests.support import disk
from tests.support.api_harness import api_client
from tests.support.harness import (
    NodeFactory,
    clock_of,
    dispatcher_of,
    enqueue,
    recording_app,
    settle,
    wait_until,
)
from tests.support.procs import ServerProcess, poll

BIG = "x" * 20_000  # a payload that needs new pages wherever it is written
FULL = "disk full (SQLITE_FULL) since 2026-01-01T00:00:00Z, retrying"  # the ManualClock's start
SAFETY_S = 5.0  # real time, only ever reached when something is broken


async def eventually(predicate: Callable[[], Any], timeout: float = SAFETY_S) -> Any:
    """predicate's first truthy value. What it waits for happens on SQLite's threads, so
    nothing can be awaited: bounded polling, yielding to the loop."""
    async with asyncio.timeout(timeout):
        while not (value := predicate()):
            await asyncio.sleep(0.005)
        return value


@asynccontextmanager
async def full_read_models(node: EmbeddedNode) -> AsyncIterator[None]:
    """The read-model file cannot grow while inside (its own disk is full)."""
    db = node.store.db
    [(limit,)] = await db.execute_fetchall("PRAGMA max_page_count")
    await _no_room(db.execute_fetchall)
    try:
        yield
    finally:
        await db.execute(f"PRAGMA max_page_count = {limit}")


async def _no_room(query: Callable[[str], Awaitable[Any]]) -> None:
    [(pages,)] = await query("PRAGMA page_count")
    await query(f"PRAGMA max_page_count = {pages}")


@asynccontextmanager
async def full_log(node: EmbeddedNode, *job_ids: str) -> AsyncIterator[None]:
    """The log cannot grow while inside, not even by the smallest record in the partitions
    of these jobs. max_page_count is a connection's, so it is set on the writer's (from
    this thread: SQLite serialises the calls on a connection); then records of one byte
    are appended to each partition until the log refuses one, so that its last page has
    no room left for any record of the jobs (the projections quarantine them)."""
    assert node.backend.writer is not None
    conn: sqlite3.Connection = node.backend.writer._conn
    (limit,) = conn.execute("PRAGMA max_page_count").fetchone()
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    conn.execute(f"PRAGMA max_page_count = {pages}")
    log = node.backend.topic(JOBS)
    try:
        for partition in {log.partition_for(job_id) for job_id in job_ids}:
            with pytest.raises(LogError, match="database or disk is full"):
                for _ in range(10_000):
                    await log.append([Entry("f", b"x", partition)], sync=False)
        yield
    finally:
        conn.execute(f"PRAGMA max_page_count = {limit}")


async def test_a_write_that_fills_the_disk_raises_its_own_error(tmp_path: Path) -> None:
    """SQLite rolls back by itself on SQLITE_FULL; the store's ROLLBACK after it raised
    'cannot rollback - no transaction is active' instead of the error that mattered."""
    store = await ReadModelStore.open(tmp_path / "views.db")
    try:
        await _no_room(store.db.execute_fetchall)
        rows = [(f"log-{n}", "r", "j", 1, "info", BIG, b"{}", 0, 0, n) for n in range(20)]
        with pytest.raises(sqlite3.OperationalError, match="^database or disk is full$"):
            await store.write_logs(rows, {0: 20}, [])
        assert await store.checkpoints("run_logs") == {}  # nothing of the batch was kept
    finally:
        await store.close()


async def test_the_projections_outlast_a_full_read_model_file(make_node: NodeFactory) -> None:
    app, ran, _ = recording_app()
    node = await make_node(app)
    await wait_until(node, await enqueue(node, "record", 1), JobStatus.COMPLETED)
    await settle(node)
    async with api_client(node) as client, full_read_models(node):
        big = await enqueue(node, "record", BIG)  # acknowledged: durable in the log
        await eventually(lambda: ran == [1, BIG])  # the log is fine: the job ran
        await eventually(lambda: "projection jobs" in node.projector.faults.open)
        assert f"projection jobs: {FULL}" in node.faults()
        assert node.crashed() == []  # before: the three projection tasks had died
        assert await node.queries.job(big) is None  # not visible yet
        health = await client.get("/health")
        assert health.status_code == 503
        assert f"projection jobs: {FULL}" in health.json()["reason"]
    clock_of(node).advance(FIRST_RETRY_S)  # the retry, now that there is room
    done = await wait_until(node, big, JobStatus.COMPLETED)
    assert done.attempt == 1  # ran once: nothing applied twice, nothing lost
    await settle(node)
    assert node.faults() == [] and node.crashed() == []


async def test_the_dispatcher_holds_its_picks_while_the_log_refuses_them(
    make_node: NodeFactory,
) -> None:
    """A pick the log refuses stops all picking for the backoff: before, the job went
    back to the ready set and was picked again at once, starting and cancelling its
    handler in a loop as fast as the log refused it."""
    app, ran, release = recording_app()
    node = await make_node(app, concurrency=1)
    blocker = await enqueue(node, "blocker")
    await wait_until(node, blocker, JobStatus.IN_PROGRESS)
    waiting = await enqueue(node, "record", BIG)  # acknowledged, waits for the slot
    await settle(node)
    async with full_log(node, blocker, waiting):
        release.set()  # the blocker's end and the next pick meet a full log
        await eventually(lambda: ran)  # the waiting job started (picks start handlers)
        for _ in range(200):
            await asyncio.sleep(0)
        assert ran == [BIG]  # started once, not over and over
        assert "dispatcher appends" in dispatcher_of(node).faults.open
        assert any(r.startswith("log: disk full (SQLITE_FULL) since ") for r in node.faults())
    clock_of(node).advance(FIRST_RETRY_S)  # room again: the picks and the ends retried
    assert (await wait_until(node, blocker, JobStatus.COMPLETED)).attempt == 1
    assert (await wait_until(node, waiting, JobStatus.COMPLETED)).attempt == 1
    await settle(node)
    assert node.faults() == [] and node.crashed() == []


async def test_a_due_time_whose_append_fails_is_decided_again(make_node: NodeFactory) -> None:
    """JobDue was published with nothing watching it: refused, the job stayed scheduled
    until the next restart."""
    app, ran, _ = recording_app()
    node = await make_node(app)
    delayed = await enqueue(node, "record", BIG, delay_seconds=1)
    await settle(node)
    async with full_log(node, delayed):
        clock_of(node).advance(1)  # due now, and the JobDue is refused
        await eventually(lambda: "dispatcher appends" in dispatcher_of(node).faults.open)
    clock_of(node).advance(FIRST_RETRY_S)
    assert (await wait_until(node, delayed, JobStatus.COMPLETED)).attempt == 1
    assert ran == [BIG]


# -- a real disk filling up under a real server -------------------------------------------


@contextmanager
def small_disk(folder: Path, size: str = "6m") -> Iterator[Path]:
    """A tmpfs of `size` mounted at folder (root only; the test is skipped otherwise)."""
    try:
        with disk.small_disk(folder, size) as mounted:
            yield mounted
    except disk.CannotMount as refused:
        pytest.skip(str(refused))


def post(server: ServerProcess, payload: Any) -> httpx.Response:
    return server.http.post("/api/v1/tasks", json={"task_type": "echo", "payload": payload},
                            timeout=10)  # a POST waits up to 5 s for the read models


@pytest.mark.slow
def test_a_server_on_full_disks_resumes_by_itself_once_space_is_freed(tmp_path: Path) -> None:
    """The log and the read models each on a small disk of their own (symlinks: SQLite
    puts a file's WAL beside its target), filled one after the other, then freed, under
    a real `jobledger serve --demo` that is never restarted."""
    with small_disk(tmp_path / "log-disk") as log_disk, \
            small_disk(tmp_path / "views-disk") as views_disk:
        (tmp_path / "j.db").symlink_to(log_disk / "j.db")
        (tmp_path / "j.views.db").symlink_to(views_disk / "j.views.db")
        server = ServerProcess(tmp_path / "j.db", "--demo")
        try:
            server.wait_healthy()
            acked = [post(server, n).json()["task_id"] for n in range(10)]

            fillers = [disk.fill(views_disk)]  # the read models' disk: the log still writes
            answer = post(server, BIG)
            assert answer.status_code == 201, answer.text
            acked.append(answer.json()["task_id"])
            assert server.task(acked[-1]) is None  # acknowledged, not visible yet
            health = server.http.get("/health")
            assert health.status_code == 503
            assert "projection jobs: disk full (SQLITE_FULL) since " in health.json()["reason"]

            fillers.append(disk.fill(log_disk))  # the log's disk too: writes are refused
            refused = 0
            for n in range(20):
                answer = post(server, [n, BIG])
                if answer.status_code == 201:  # what still fitted in the log's last pages
                    acked.append(answer.json()["task_id"])
                else:
                    assert (answer.status_code, answer.json()["code"]) == (503, "LOG_UNAVAILABLE")
                    refused += 1
            assert refused
            reason = server.http.get("/health").json()["reason"]
            assert "log: disk full (SQLITE_FULL) since " in reason
            assert server.proc.poll() is None

            for filler in fillers:  # space again; no restart from here on
                filler.unlink()
            poll(lambda: server.http.get("/health").status_code == 200, timeout=30)
            answer = post(server, "after")
            assert answer.status_code == 201 and server.task(answer.json()["task_id"])
            acked.append(answer.json()["task_id"])
            for task_id in acked:  # nothing acknowledged is lost
                done = poll(lambda t=task_id: server.finished(t), timeout=30)
                assert done["status"] == "completed"
        finally:
            server.stop()


async def test_the_projections_outlast_a_failing_read_of_the_log(
    make_node: NodeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read of the log that fails with a fault that can pass (an I/O error) is retried
    after a backoff, from the checkpoint (fault-injection row R14; before, the read's error
    ended the projection task for good)."""
    app, ran, _ = recording_app()
    node = await make_node(app)
    await wait_until(node, await enqueue(node, "record", 1), JobStatus.COMPLETED)
    await settle(node)
    log = node.backend.topic(JOBS)
    reads = log.read
    failing = True

    async def read(partition: int, offset: int, limit: int = 1000) -> Any:
        if failing:
            error = sqlite3.OperationalError("disk I/O error")
            error.sqlite_errorcode = sqlite3.SQLITE_IOERR  # type: ignore[attr-defined]
            error.sqlite_errorname = "SQLITE_IOERR"  # type: ignore[attr-defined]
            raise error
        return await reads(partition, offset, limit)

    monkeypatch.setattr(log, "read", read)
    second = asyncio.create_task(enqueue(node, "record", 2))
    await eventually(lambda: "projection jobs reads" in node.projector.faults.open)
    assert node.crashed() == []  # before: project-jobs had died
    assert "projection jobs reads: disk I/O error (SQLITE_IOERR)" in " ".join(node.faults())
    failing = False
    clock_of(node).advance(FIRST_RETRY_S)
    done = await wait_until(node, await second, JobStatus.COMPLETED)
    assert done.attempt == 1 and ran == [1, 2]
    await settle(node)
    assert node.faults() == [] and node.crashed() == []
