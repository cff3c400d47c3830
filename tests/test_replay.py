"""`jobledger replay`: read models rebuilt from offset 0 equal the live ones."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from jobledger.schemas.lifecycle import TERMINAL
from jobledger.services.handlers.demo import demo
from jobledger.services.node.embedded import EmbeddedNode, NodeConfig, views_path
from jobledger.services.replay.rebuild import (
    PROGRESS_EVERY_S,
    ReplayProgress,
    checksums,
    replay,
)
from jobledger.services.runtime.backoff import Backoff
from jobledger.services.runtime.dispatcher import DispatcherConfig
from jobledger.services.write.producer import task_request
from tests.support.harness import wait_until


async def _run_mixed_workload(db: Path) -> None:
    """Completed, retried, dead-lettered, cancelled and requeued jobs, with logs."""
    config = NodeConfig(db=db, dispatcher=DispatcherConfig(
        concurrency=4, backoff=Backoff(base_seconds=0.001, jitter=0)))
    async with EmbeddedNode(config, demo) as node:
        requests = [task_request("echo", {"n": i}, priority=i % 256) for i in range(200)]
        requests += [task_request("flaky", {"fail_times": 2}) for _ in range(20)]
        requests += [task_request("fail", {"message": "no"}, max_retries=1) for _ in range(10)]
        requests += [task_request("echo", None, delay_seconds=3600) for _ in range(5)]
        jobs = await node.commands.enqueue(requests, wait_visible=True)
        await node.commands.cancel(jobs[-1].task_id)
        for job in jobs[:-5]:
            await wait_until(node, job.task_id, lambda s: s.status in TERMINAL)
        await node.commands.requeue(jobs[0].task_id)
        await wait_until(node, jobs[0].task_id, lambda s: s.attempt == 2 and s.status in TERMINAL)


async def test_replay_rebuilds_read_models_equal_to_the_live_ones(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    await _run_mixed_workload(db)
    live = await checksums(views_path(db))
    rebuilt = await replay(db, tmp_path / "rebuilt.db", show_progress=False)
    assert set(rebuilt) >= {"jobs", "runs", "run_logs", "job_counts", "workers", "runs_ended"}
    assert rebuilt == live


def test_replay_command_prints_matching_checksums(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    asyncio.run(_run_mixed_workload(db))
    result = subprocess.run(
        [sys.executable, "-m", "jobledger.services.cli.main", "replay", "--db", str(db)],
        capture_output=True, text=True, timeout=120, env={"COLUMNS": "200", "PATH": ""},
    )
    assert result.returncode == 0, result.stderr
    assert "≠" not in result.stdout
    assert result.stdout.count("✓") >= 10
    assert (tmp_path / "j.replay.db").exists()


def test_replay_progress_is_logged_at_info_every_few_seconds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="jobledger.replay")
    every = PROGRESS_EVERY_S
    seconds = iter([0.0, 1.0, every, every + 1, every + 2, 2 * every])
    progress = ReplayProgress(1000, now=lambda: next(seconds))
    for _ in range(3):
        progress.advance(300)  # too soon, logged, too soon
    progress.advance(100)  # all done: finished() says so
    progress.finished()
    assert [(r.fields["event"], r.fields.get("events")) for r in caplog.records] == [  # type: ignore[attr-defined]
        ("replay.started", None), ("replay.progress", 600), ("replay.finished", 1000)]
    assert caplog.records[1].getMessage() == \
        f"replay: 600 of 1000 events applied (60%), {600 / every:.0f} events/s"
