"""Causal ids in the Kafka mode (docs/events.md, "Causal ids"): an API node and a worker
node in this process on a real test broker. A task enqueued through the API node with an
X-Request-ID fails its first attempt on the worker and completes on the retry; every event
of it carries the request id, the causes walk from JobCompleted (JobSucceeded) goes back to
the JobEnqueued and the request, and a node that folds the topics from the start (a replay)
has the same read models, byte for byte."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from jobledger.schemas import JobStatus
from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext
from jobledger.services.node.kafka import KafkaNode
from jobledger.services.runtime.backoff import Backoff
from jobledger.services.runtime.dispatcher import DispatcherConfig
from tests.support.api_harness import api_client
from tests.support.harness import wait_until
from tests.support.kafka_broker import TansuBroker
from tests.support.kafka_harness import kafka_config, node_config, started

WAIT_S = 20.0


def _app() -> App:
    app = App()

    @app.job("flaky")
    async def flaky(ctx: JobContext, payload: Any) -> int:
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return ctx.attempt

    return app


@pytest.fixture
async def nodes() -> AsyncIterator[list[KafkaNode]]:
    running: list[KafkaNode] = []
    yield running
    for node in reversed(running):
        await node.stop()


async def test_a_retried_jobs_causes_walk_back_to_its_request_on_kafka(
    tmp_path: Path, kafka_broker: TansuBroker, nodes: list[KafkaNode]
) -> None:
    config = kafka_config(kafka_broker)
    api = await started(node_config(config, tmp_path / "api.db"), _app())
    nodes.append(api)
    dispatcher = DispatcherConfig(concurrency=2, shutdown_grace_seconds=0.0,
                                  backoff=Backoff(base_seconds=0.001, jitter=0))
    worker = await started(node_config(config, tmp_path / "worker.db", run_workers=True,
                                       dispatcher=dispatcher), _app())
    nodes.append(worker)
    async with api_client(api) as client:  # type: ignore[arg-type]  # any Node serves
        reply = await client.post("/api/v1/tasks", json={"task_type": "flaky"},
                                  headers={"X-Request-ID": "kafka-req-1"})
        task_id = reply.json()["task_id"]
        done = await wait_until(api, task_id, JobStatus.COMPLETED, WAIT_S)  # type: ignore[arg-type]
        assert done.attempt == 2 and done.correlation_id == "kafka-req-1"
        history = (await client.get(f"/api/v1/tasks/{task_id}/history")).json()
        assert {e["correlation_id"] for e in history} == {"kafka-req-1"}
        succeeded = next(e for e in history if e["type"] == "JobSucceeded")
        chain = (await client.get(f"/api/v1/events/{succeeded['event_id']}/causes")).json()
    assert [e["type"] for e in chain] == [
        "JobSucceeded", "JobPicked", "JobDue", "JobFailed", "JobPicked", "JobEnqueued"]
    causes = [e["causation_id"] for e in chain]
    assert causes == [e["event_id"] for e in chain[1:]] + ["kafka-req-1"]

    await worker.stop()  # its last event (WorkerStopped) appended: the topics stand still
    nodes.remove(worker)
    late = await started(node_config(config, tmp_path / "late.db"))
    nodes.append(late)
    assert await api.caught_up(WAIT_S) and await late.caught_up(WAIT_S)
    assert await late.store.checksums() == await api.store.checksums()
