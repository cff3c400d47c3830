"""A job enqueued by a non-Python Kafka client runs: kcat publishes a JobEnqueued envelope,
written as plain JSON the way docs/events.md shows it, onto the jobs topic; a worker runs
it and the API node shows it completed, like a job enqueued through the API."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from jobledger.schemas import JOBS, JobStatus
from jobledger.schemas.common import uuid7
from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext
from jobledger.services.runtime.dispatcher import DispatcherConfig
from jobledger.services.write.producer import job_id_for_key
from tests.support.harness import runs, wait_until
from tests.support.kafka_broker import TansuBroker
from tests.support.kafka_harness import kafka_config, node_config, started
from tests.test_kafka_log import _kcat_produce

WAIT_S = 30.0


def _app() -> App:
    app = App()

    @app.job("greet")
    async def greet(ctx: JobContext, payload: Any) -> dict[str, str]:
        return {"greeting": f"hello {payload['name']}"}

    return app


def _envelope(job_id: str, name: str, **event: Any) -> bytes:
    """The smallest valid JobEnqueued record (docs/events.md), built by hand."""
    record = {
        "id": uuid7(), "key": job_id, "time": "2026-01-15T09:30:00Z",
        "actor": {"kind": "client", "id": "kcat"},
        "event": {"type": "JobEnqueued", "job_id": job_id, "task_type": "greet",
                  "payload": {"name": name}, **event},
    }  # fmt: skip
    return json.dumps(record, separators=(",", ":")).encode()


async def test_a_job_published_with_kcat_runs_and_shows_completed(
    tmp_path: Path, kcat_broker: TansuBroker
) -> None:
    kcat = shutil.which("kcat")
    assert kcat, "kcat is not installed: apt-get install -y kcat"
    config = kafka_config(kcat_broker)
    worker_config = node_config(config, tmp_path / "worker.db", run_projections=False,
                                run_workers=True,
                                dispatcher=DispatcherConfig(shutdown_grace_seconds=0))
    api = await started(node_config(config, tmp_path / "api.db"))
    try:
        worker = await started(worker_config, _app())
    except BaseException:
        await api.stop()
        raise
    try:
        topic = config.topic_name(JOBS)
        plain = uuid7()
        keyed = job_id_for_key("kcat-order-1")  # the id an idempotency key gives (events.md)
        await _kcat_produce(kcat, kcat_broker, topic, plain, _envelope(plain, "kcat"))
        for _ in range(2):  # a retried publish of a keyed job is one job
            await _kcat_produce(kcat, kcat_broker, topic, keyed,
                                _envelope(keyed, "again", idempotency_key="kcat-order-1"))
        for job_id, name in ((plain, "kcat"), (keyed, "again")):
            done = await wait_until(api, job_id, JobStatus.COMPLETED, WAIT_S)
            assert done.result is not None
            assert json.loads(bytes(done.result)) == {"greeting": f"hello {name}"}
            assert [(a, s) for a, s, _ in await runs(api, job_id)] == [(1, "COMPLETED")]
        assert api.projector.quarantined == 0
    finally:
        await worker.stop()
        await api.stop()
