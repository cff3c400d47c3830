"""The read-model file (projections/store_file.py): written without fsyncs, marked with the
boot it is open in, and rebuilt from the log when an OS crash may have damaged it."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from jobledger.projections.store import ReadModelStore
from jobledger.projections.store_file import CLOSED, boot_mark, discard_if_crashed
from jobledger.schemas import JobStatus
from jobledger.services.handlers.demo import demo
from jobledger.services.node.embedded import views_path
from jobledger.services.replay.rebuild import checksums
from tests.support.harness import NodeFactory, enqueue, wait_until


def mark_of(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def tamper(path: Path, mark: int) -> None:
    """Leave the file as a crash might: marked open, and its jobs rows gone."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("DELETE FROM jobs")
        conn.execute(f"PRAGMA user_version = {mark}")
    finally:
        conn.close()


async def test_an_open_store_is_marked_with_this_boot_and_a_closed_one_is_not(
    tmp_path: Path
) -> None:
    path = tmp_path / "views.db"
    store = await ReadModelStore.open(path)
    assert mark_of(path) == boot_mark() != CLOSED
    assert (await store.db.execute_fetchall("PRAGMA synchronous"))[0][0] == 0  # OFF
    await store.close()
    assert mark_of(path) == CLOSED


async def test_reading_a_running_stores_file_leaves_its_mark(tmp_path: Path) -> None:
    """`jobledger replay --live` checksums the file a running server writes: its mark must
    stay, or an OS crash after it would go unnoticed."""
    path = tmp_path / "views.db"
    store = await ReadModelStore.open(path)
    try:
        assert await checksums(path) == await store.checksums()
        assert mark_of(path) == boot_mark()
    finally:
        await store.close()
    assert mark_of(path) == CLOSED


async def completed_job_then_tampered(make_node: NodeFactory, mark: int) -> str:
    """A node completes a job and stops; its views are then tampered with (marked `mark`,
    the job's row gone). The job's id."""
    first = await make_node(demo)
    job_id = await enqueue(first, "echo", {"n": 1})
    await wait_until(first, job_id, JobStatus.COMPLETED)
    await make_node.stop(first)
    tamper(views_path(make_node.db), mark)
    return job_id


async def test_views_left_open_by_an_earlier_boot_are_rebuilt_from_the_log(
    make_node: NodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    another_boot = boot_mark() % (2**31 - 1) + 1  # any mark but this boot's (and CLOSED)
    job_id = await completed_job_then_tampered(make_node, another_boot)

    with caplog.at_level(logging.WARNING):
        second = await make_node(demo)
    rebuilt = await wait_until(second, job_id, JobStatus.COMPLETED)
    assert rebuilt.attempt == 1
    assert "it was open when the machine went down" in caplog.text


async def test_views_left_open_in_this_boot_are_kept(make_node: NodeFactory) -> None:
    """A process killed in this boot loses nothing: the OS still had every page."""
    job_id = await completed_job_then_tampered(make_node, boot_mark())

    assert not discard_if_crashed(views_path(make_node.db))
    second = await make_node(demo)
    assert await second.queries.job(job_id) is None  # the tampered file itself, not a rebuild


def test_an_unreadable_views_file_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "views.db"
    path.write_bytes(b"not a database, " * 512)
    assert discard_if_crashed(path) and not path.exists()


def test_no_file_or_a_cleanly_closed_one_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "views.db"
    assert not discard_if_crashed(path)
    sqlite3.connect(path).close()  # user_version 0: closed (or older than the mark)
    assert not discard_if_crashed(path) and path.exists()
