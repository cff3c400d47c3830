"""Partition ownership by consumer-group assignment, with nodes in this process on a real
test broker: a worker that gains partitions rebuilds them from the log, a job whose worker
is gone is lease-expired by the new owner's clock, two workers split the partitions and
each picks only from its own, and attempts running when their partition moves finish and
report.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from jobledger.schemas import Actor, ActorKind, JobEnqueued, JobPicked, JobStatus
from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext
from jobledger.services.log.kafka import KafkaConfig, KafkaLogBackend, jobledger_topics
from jobledger.services.node.kafka import KafkaNode
from jobledger.services.runtime.backoff import Backoff
from jobledger.services.runtime.clock import ManualClock
from jobledger.services.runtime.dispatcher import DispatcherConfig
from jobledger.services.write.producer import task_request
from jobledger.services.write.publisher import Publisher
from tests.support.harness import runs, wait_until
from tests.support.kafka_broker import TansuBroker
from tests.support.kafka_harness import PARTITIONS, kafka_config, node_config, started

WAIT_S = 20.0
EVERY = set(range(PARTITIONS))


def _app(gate: asyncio.Event | None = None) -> App:
    app = App()

    @app.job("noop")
    async def noop(ctx: JobContext, payload: Any) -> int:
        return ctx.attempt

    @app.job("gated")
    async def gated(ctx: JobContext, payload: Any) -> int:
        assert gate is not None
        await gate.wait()
        return ctx.attempt

    return app


def _worker(config: KafkaConfig, views: Path, **dispatcher: Any) -> Any:
    """A node with projections and workers (no scheduler)."""
    settings = {"concurrency": 4, "shutdown_grace_seconds": 0.0,
                "backoff": Backoff(base_seconds=0.001, jitter=0), **dispatcher}
    return node_config(config, views, run_workers=True,
                       dispatcher=DispatcherConfig(**settings))  # fmt: skip


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Group joins and rebalances are real time on the broker: a bounded wait loop."""
    async with asyncio.timeout(WAIT_S):
        while not condition():
            await asyncio.sleep(0.02)


def _owns(node: KafkaNode, partitions: set[int]) -> Callable[[], bool]:
    return lambda: node.dispatcher is not None and node.dispatcher.partitions == partitions


@pytest.fixture
async def nodes() -> AsyncIterator[list[KafkaNode]]:
    """Nodes a test starts; stopped at the end, newest first."""
    running: list[KafkaNode] = []
    yield running
    for node in reversed(running):
        await node.stop()


async def _start(nodes: list[KafkaNode], start: Awaitable[KafkaNode]) -> KafkaNode:
    node = await start
    nodes.append(node)
    return node


async def test_a_worker_that_gains_partitions_runs_the_jobs_already_in_them(
    tmp_path: Path, kafka_broker: TansuBroker, nodes: list[KafkaNode]
) -> None:
    config = kafka_config(kafka_broker)
    api = await _start(nodes, started(node_config(config, tmp_path / "api.db"), _app()))
    jobs = await api.commands.enqueue([task_request("noop") for _ in range(40)])
    worker = await _start(nodes, started(_worker(config, tmp_path / "w.db"), _app()))
    await _until(_owns(worker, EVERY), "the worker owns every partition")
    for job in jobs:
        assert (await wait_until(api, job.task_id, JobStatus.COMPLETED, WAIT_S)).attempt == 1


async def test_the_new_owner_expires_the_lease_of_a_job_whose_worker_is_gone(
    tmp_path: Path, kafka_broker: TansuBroker, nodes: list[KafkaNode]
) -> None:
    config = kafka_config(kafka_broker)
    clock = ManualClock()
    job_id = await _ghost_attempt(config, clock, lease_seconds=5)
    worker = await _start(nodes, started(_worker(config, tmp_path / "w.db", lease_seconds=30),
                                         _app(), clock))  # fmt: skip
    await _until(_owns(worker, EVERY), "the worker owns every partition")
    await wait_until(worker, job_id, JobStatus.IN_PROGRESS, WAIT_S)
    clock.advance(6)  # past the ghost's lease, by the new owner's clock
    await wait_until(worker, job_id, JobStatus.SCHEDULED, WAIT_S)
    clock.advance(1)  # past the backoff
    done = await wait_until(worker, job_id, JobStatus.COMPLETED, WAIT_S)
    assert done.attempt == 2 and done.worker_id == worker.dispatcher.config.worker_id  # type: ignore[union-attr]
    first_run, second_run = await runs(worker, job_id)
    assert first_run[:2] == (1, "FAILED") and "LeaseExpired" in (first_run[2] or "")
    assert second_run == (2, "COMPLETED", None)


async def _ghost_attempt(config: KafkaConfig, clock: ManualClock, lease_seconds: float) -> str:
    """A job picked by a worker that never runs again: the log holds its pick and nothing
    more, as after a SIGKILL."""
    backend = await KafkaLogBackend.open(config, jobledger_topics(config))
    try:
        publisher = Publisher(backend, clock, Actor(ActorKind.DISPATCHER, "ghost"))
        job_id = "ghost-job"
        await publisher.publish(JobEnqueued(job_id=job_id, task_type="noop"), job_id)
        lease = clock.now() + timedelta(seconds=lease_seconds)
        await publisher.publish(
            JobPicked(job_id=job_id, attempt=1, worker_id="ghost", lease_expires_at=lease), job_id)
        return job_id
    finally:
        await backend.close()


async def test_two_workers_split_the_partitions_and_pick_only_from_their_own(
    tmp_path: Path, kafka_broker: TansuBroker, nodes: list[KafkaNode]
) -> None:
    config = kafka_config(kafka_broker)
    first = await _start(nodes, started(_worker(config, tmp_path / "a.db"), _app()))
    await _until(_owns(first, EVERY), "the first worker owns every partition")
    second = await _start(nodes, started(_worker(config, tmp_path / "b.db"), _app()))
    assert first.dispatcher is not None and second.dispatcher is not None

    def split() -> bool:
        mine, theirs = first.dispatcher.partitions, second.dispatcher.partitions  # type: ignore[union-attr]
        return bool(mine) and bool(theirs) and not mine & theirs and mine | theirs == EVERY

    await _until(split, "the two workers split the partitions")
    jobs = await first.commands.enqueue([task_request("noop") for _ in range(60)])
    owner = {p: n.dispatcher.config.worker_id for n in (first, second)  # type: ignore[union-attr]
             for p in n.dispatcher.partitions}  # type: ignore[union-attr]
    for job in jobs:
        done = await wait_until(first, job.task_id, JobStatus.COMPLETED, WAIT_S)
        assert done.worker_id == owner[done.partition]
    assert {owner[p] for p in EVERY} == {first.dispatcher.config.worker_id,
                                         second.dispatcher.config.worker_id}  # fmt: skip


async def test_attempts_running_when_their_partition_moves_finish_and_report(
    tmp_path: Path, kafka_broker: TansuBroker, nodes: list[KafkaNode]
) -> None:
    config = kafka_config(kafka_broker)
    gate = asyncio.Event()
    first = await _start(nodes, started(_worker(config, tmp_path / "a.db", concurrency=16),
                                        _app(gate)))  # fmt: skip
    await _until(_owns(first, EVERY), "the first worker owns every partition")
    jobs = await first.commands.enqueue([task_request("gated") for _ in range(12)])
    for job in jobs:
        await wait_until(first, job.task_id, JobStatus.IN_PROGRESS, WAIT_S)
    second = await _start(nodes, started(_worker(config, tmp_path / "b.db"), _app()))
    await _until(lambda: bool(second.dispatcher.partitions), "the second worker owns some")  # type: ignore[union-attr]
    moved = [j.task_id for j in jobs
             if (await first.queries.job(j.task_id)).partition in second.dispatcher.partitions]  # type: ignore[union-attr]
    assert moved, "no running job's partition moved"
    gate.set()  # the first worker's attempts end after their partitions moved
    for job in jobs:
        done = await wait_until(first, job.task_id, JobStatus.COMPLETED, WAIT_S)
        assert done.attempt == 1  # reported by the first worker and accepted: no second run
        assert done.worker_id == first.dispatcher.config.worker_id  # type: ignore[union-attr]
