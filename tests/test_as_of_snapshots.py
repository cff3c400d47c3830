"""Snapshots for as_of (services/history/snapshots.py): bases and their deltas, what a crash
in the middle of one leaves, and directories written by the previous format (bases only)."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jobledger.projections.fold import JobsChange
from jobledger.projections.queries import Queries
from jobledger.services.handlers.app import App
from jobledger.services.history import snapshots
from jobledger.services.history.copies import deltas_path
from jobledger.services.history.position import format_position
from jobledger.services.history.snapshots import AppliedTimes, Snapshot, minute_floor, snapshots_dir
from jobledger.services.node.embedded import EmbeddedNode, NodeConfig, views_path
from jobledger.services.runtime.clock import ManualClock
from jobledger.services.runtime.projector import TOPIC_OF_MODEL, Projected
from jobledger.services.write.producer import task_request

app = App()


@app.job("echo")
async def echo(payload: Any) -> Any:
    return payload


def _config(tmp_path: Path) -> NodeConfig:
    # A delta every 3 records, a new base once a base's deltas hold 4 jobs rows.
    return NodeConfig(db=tmp_path / "j.db", snapshot_every_events=3, snapshot_base_after_rows=4,
                      run_workers=False, run_scheduler=False)


def _taken(node: EmbeddedNode) -> list[Snapshot]:
    assert node.history.snapshots is not None
    return node.history.snapshots.taken


async def _grow(node: EmbeddedNode, steps: int) -> list[tuple[str, Any]]:
    """Enqueue tasks and cancel some, a few records a step; the answers (stats, every task)
    the live read models gave after each step, with the position they reflect."""
    recorded = []
    for step in range(steps):
        ids = await node.commands.enqueue(
            [task_request("echo", step, queue=f"q{step % 2}") for _ in range(2)],
            wait_visible=True)
        if step % 3 == 0:
            await node.commands.cancel(ids[0].task_id)
        assert await node.caught_up(10)
        recorded.append(await _answers(node, node.queries, await _position(node)))
    return recorded


async def _position(node: EmbeddedNode) -> str:
    return format_position({topic: await node.backend.topic(topic).end_offsets()
                            for topic in TOPIC_OF_MODEL.values()})


async def _answers(node: EmbeddedNode, queries: Queries, position: str) -> tuple[str, Any]:
    moment = await node.history.moment(position)
    return position, (await queries.stats(moment.time_ms), await queries.jobs(limit=500),
                      await queries.queues())


async def _as_of(node: EmbeddedNode, position: str) -> tuple[str, Any]:
    async with node.history.at(await node.history.moment(position)) as then:
        return await _answers(node, then, position)


async def _until(check: Any) -> None:
    async with asyncio.timeout(10):  # snapshots are taken in threads
        while not check():
            await asyncio.sleep(0.01)


async def test_as_of_from_each_base_and_delta_equals_the_live_state(tmp_path: Path) -> None:
    async with EmbeddedNode(_config(tmp_path), app, clock=ManualClock()) as node:
        recorded = await _grow(node, 12)
        await _until(lambda: len({s.base.number for s in _taken(node)}) >= 2)
        assert any(s.seq for s in _taken(node))
        for position, live in recorded:
            assert await _as_of(node, position) == (position, live)


async def test_a_delta_or_base_half_written_at_a_crash_is_ignored_then_removed(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    async with EmbeddedNode(config, app, clock=ManualClock()) as node:
        recorded = await _grow(node, 6)
        await _until(lambda: any(s.seq for s in _taken(node)))
    base = max((s for s in _taken(node) if s.seq), key=lambda s: s.base.number).path
    directory = snapshots_dir(views_path(config.db))
    (directory / "000099.db.tmp").write_bytes(b"half a base")
    committed = _crash_in_the_middle_of_a_delta(deltas_path(base))
    async with EmbeddedNode(config, app, clock=ManualClock()) as node:
        assert not list(directory.glob("*.tmp"))
        assert max(s.seq for s in _taken(node) if s.path == base) == committed
        for position, live in recorded:
            assert await _as_of(node, position) == (position, live)
        recorded = await _grow(node, 3)  # the next delta follows the last committed one
        await _until(lambda: max(s.events for s in _taken(node)) >= max(
            sum(int(p.split(":")[1]) for p in position.split(",")) for position, _ in recorded))
        for position, live in recorded:
            assert await _as_of(node, position) == (position, live)


def _crash_in_the_middle_of_a_delta(deltas: Path) -> int:
    """A process killed while writing the delta after the last committed one: its rows are
    in the deltas file's WAL (the page cache spilled) but never committed. The last
    committed delta's seq."""
    conn = sqlite3.connect(deltas)
    (committed,) = conn.execute("SELECT MAX(seq) FROM deltas").fetchone()
    conn.close()
    seq = committed + 1
    script = f"""
import os, sqlite3
conn = sqlite3.connect({str(deltas)!r}, isolation_level=None)
conn.execute("PRAGMA cache_size=2")
conn.execute("BEGIN")
conn.execute("INSERT INTO deltas VALUES ({seq}, NULL, 5000)")
conn.execute("INSERT INTO checkpoints VALUES ({seq}, 'jobs', 0, 1000000)")
conn.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)"
             " INSERT INTO jobs (seq, job_id, payload) SELECT {seq}, 'x' || i, randomblob(2000)"
             " FROM n")
os._exit(9)
"""
    subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
    assert Path(f"{deltas}-wal").stat().st_size > 5000 * 1000  # the rows reached the disk
    return int(committed)


async def test_a_directory_of_the_previous_format_is_read_as_bases(tmp_path: Path) -> None:
    """The previous code's snapshots were bases alone, job_event_ids copied too."""
    config = _config(tmp_path)
    async with EmbeddedNode(config, app, clock=ManualClock()) as node:
        recorded = await _grow(node, 8)
        await _until(lambda: len({s.base.number for s in _taken(node)}) >= 2)
    directory = snapshots_dir(views_path(config.db))
    for path in directory.glob("*.deltas.db*"):
        path.unlink()
    for base in directory.glob("??????.db"):
        conn = sqlite3.connect(base)
        conn.execute("ATTACH ? AS live", (str(views_path(config.db)),))
        conn.execute("INSERT INTO job_event_ids SELECT * FROM live.job_event_ids")
        conn.commit()
        conn.close()
    async with EmbeddedNode(config, app, clock=ManualClock()) as node:
        assert _taken(node) and not any(s.seq for s in _taken(node))
        for position, live in recorded:
            assert await _as_of(node, position) == (position, live)
        recorded = await _grow(node, 3)
        await _until(lambda: any(s.seq for s in _taken(node)))
        for position, live in recorded:
            assert await _as_of(node, position) == (position, live)


async def test_bases_of_another_schema_are_removed_at_start(tmp_path: Path) -> None:
    """As the read models of another version are rebuilt: a base without a column the
    schema has now (jobs.trace came after the previous version) cannot take today's rows."""
    config = _config(tmp_path)
    async with EmbeddedNode(config, app, clock=ManualClock()) as node:
        recorded = await _grow(node, 4)
        await _until(lambda: bool(_taken(node)))
    directory = snapshots_dir(views_path(config.db))
    for base in directory.glob("??????.db"):
        conn = sqlite3.connect(base)
        conn.execute("ALTER TABLE jobs DROP COLUMN trace")
        conn.commit()
        conn.close()
    async with EmbeddedNode(config, app, clock=ManualClock()) as node:
        assert _taken(node) == []
        assert not list(directory.glob("*.db"))
        for position, live in recorded:  # folded from offset 0
            assert await _as_of(node, position) == (position, live)


async def test_deltas_learn_their_minute_floor_from_the_projector_not_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reading a delta's records back from the log to date them consumed the jobs topic a
    second time (on Kafka, a fifth of the drain); the projector's batches tell it instead."""
    reads = []

    async def counted(*args: Any) -> int | None:
        reads.append(args)
        return await minute_floor(*args)

    monkeypatch.setattr(snapshots, "minute_floor", counted)
    async with EmbeddedNode(_config(tmp_path), app, clock=ManualClock()) as node:
        recorded = await _grow(node, 12)
        await _until(lambda: sum(1 for s in _taken(node) if s.seq) >= 3)
        for position, live in recorded:
            assert await _as_of(node, position) == (position, live)
    assert reads == []


def test_applied_times_cover_a_range_or_say_they_do_not() -> None:
    def batch(ends: dict[int, int], *minutes: int) -> Projected:
        change = JobsChange()
        for minute in minutes:
            change.stats.pending_moves[(minute, "default")] += 1
        return Projected(change, ends)

    times = AppliedTimes({0: 2})  # applied before it listened: offsets 0-1 of partition 0
    times.heard(batch({0: 4, 1: 1}, 180_000, 120_000))
    times.heard(batch({0: 5, 1: 1}))  # changed no row by minute
    times.heard(batch({0: 6, 1: 3}, 240_000))
    assert times.oldest({0: 2}, {0: 6, 1: 3}) == (120_000,)
    assert times.oldest({0: 4, 1: 1}, {0: 5, 1: 1}) == (None,)  # nothing by minute
    assert times.oldest({0: 5, 1: 1}, {0: 6, 1: 3}) == (240_000,)
    assert times.oldest({}, {0: 6}) is None  # offsets 0-1 not heard: read them
    assert times.oldest({0: 2}, {0: 7}) is None  # offset 6 not heard yet
    times.forget_before({0: 5})
    assert times.oldest({0: 2}, {0: 6}) is None  # forgotten
    assert times.oldest({0: 5}, {0: 6}) == (240_000,)
