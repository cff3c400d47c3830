"""A worker's heartbeats (services/runtime/heartbeats.py), over a real SQLite log and real
worker slots, by a ManualClock: each beat renews the lease of every running attempt to a
full lease from now and reports the worker's load; beats come every `every` seconds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from jobledger.schemas import (
    JOBS,
    WORKERS,
    Actor,
    ActorKind,
    Envelope,
    JobHeartbeat,
    WorkerHeartbeat,
    decode,
)
from jobledger.schemas.common import Progress
from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext
from jobledger.services.log.sqlite import SQLiteLogBackend
from jobledger.services.runtime.clock import ManualClock
from jobledger.services.runtime.executor import Executor
from jobledger.services.runtime.heartbeats import Heartbeats
from jobledger.services.write.publisher import Publisher
from tests.support.builders import job_state, open_log

LEASE_SECONDS, EVERY = 30.0, 10.0
WORKER = Actor(ActorKind.WORKER, "worker-1")


@dataclass
class Worker:
    backend: SQLiteLogBackend
    clock: ManualClock
    executor: Executor
    heartbeats: Heartbeats
    release: asyncio.Event


@pytest.fixture
async def worker(tmp_path: Path) -> AsyncIterator[Worker]:
    """Worker slots running two attempts that wait for `release`; "b" has reported progress."""
    app, release = App(), asyncio.Event()

    @app.job("wait")
    async def wait(ctx: JobContext, payload: Any) -> None:
        if ctx.job_id == "b":
            ctx.progress(3, total=10)
        await release.wait()

    backend, clock = await open_log(tmp_path / "log.db"), ManualClock()
    executor = Executor(app, 4, report=lambda run, outcome: None,
                        emit_log=lambda *args: None)  # fmt: skip
    publisher = Publisher(backend, clock, WORKER)
    heartbeats = Heartbeats(executor, publisher, clock, WORKER, LEASE_SECONDS, EVERY,
                            partitions=lambda: {3, 1})
    executor.start(job_state("b", task_type="wait"), attempt=2)
    executor.start(job_state("a", task_type="wait"), attempt=1)
    await asyncio.sleep(0)  # the handlers start
    yield Worker(backend, clock, executor, heartbeats, release)
    release.set()
    await executor.stop(0)
    await publisher.drain()
    await backend.close()


async def appended(worker: Worker) -> list[Envelope]:
    """Every event on the jobs and workers topics, jobs first."""
    await worker.heartbeats.publisher.drain()
    envs = []
    for topic in (JOBS, WORKERS):
        log = worker.backend.topic(topic)
        for partition in range(log.partitions):
            envs += [decode(r.value) for r in await log.read(partition, 0)]
    return envs


async def test_a_beat_renews_every_running_lease_and_reports_the_workers_load(
    worker: Worker,
) -> None:
    worker.clock.advance(100)
    worker.heartbeats.beat()

    envs = await appended(worker)
    lease = worker.clock.now() + timedelta(seconds=LEASE_SECONDS)
    beats = sorted((e.event for e in envs if isinstance(e.event, JobHeartbeat)),
                   key=lambda b: b.job_id)  # fmt: skip
    assert beats == [
        JobHeartbeat(job_id="a", attempt=1, lease_expires_at=lease),
        JobHeartbeat(job_id="b", attempt=2, lease_expires_at=lease,
                     progress=Progress(processed=3, total=10)),
    ]
    [load] = [e.event for e in envs if isinstance(e.event, WorkerHeartbeat)]
    assert (load.worker_id, load.current_jobs) == ("worker-1", ["a", "b"])
    assert load.partitions == [1, 3]  # the jobs partitions it decides for: who owns what
    assert load.memory_mb > 0
    assert {e.actor for e in envs} == {WORKER}


async def test_beats_come_every_interval_of_the_clock(worker: Worker) -> None:
    async def advance(seconds: float) -> int:
        """Move the clock on, let the beats run; how many beats there have been."""
        worker.clock.advance(seconds)
        for _ in range(20):  # turns of the loop, no time
            await asyncio.sleep(0)
        return sum(isinstance(e.event, WorkerHeartbeat) for e in await appended(worker))

    task = asyncio.create_task(worker.heartbeats.run())
    try:
        assert await advance(0) == 0
        assert await advance(EVERY - 0.1) == 0
        assert await advance(0.1) == 1
        assert await advance(EVERY - 0.1) == 1
        assert await advance(0.1) == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
