"""One job's trace across processes in the Kafka mode: `jobledger api` and `jobledger
worker` on the test broker, each exporting over OTLP/HTTP to one receiver on loopback
(tests/support/otlp.py). The API's POST server span and enqueue span, and the worker's
picks, attempts and finishes, join one trace through the JobEnqueued envelope; a record
kcat publishes with a `traceparent` header is picked in the trace that header names."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from jobledger.schemas import JOBS
from jobledger.schemas.common import uuid7
from tests.support.kafka_broker import TansuBroker, unique_prefix
from tests.support.kafka_procs import ApiProcess, WorkerProcess, kafka_env
from tests.support.otlp import Received, otlp_env, otlp_receiver
from tests.support.procs import poll

pytestmark = pytest.mark.slow

WAIT_S = 60.0
KIND_SERVER, KIND_PRODUCER = Span.SPAN_KIND_SERVER, Span.SPAN_KIND_PRODUCER


@pytest.fixture
def traced(tmp_path: Path, kcat_broker: TansuBroker) -> Iterator[tuple[ApiProcess, Received, str]]:
    """An API process and a worker process, both exporting to one OTLP receiver; (the API,
    what arrived, the topic prefix)."""
    prefix = unique_prefix()
    with otlp_receiver() as (endpoint, received):
        env = kafka_env(kcat_broker, prefix)
        api = ApiProcess("api", tmp_path, {**env, **otlp_env(endpoint, "api")})
        worker = WorkerProcess("worker", tmp_path, {**env, **otlp_env(endpoint, "worker")},
                               "--app", "kafka_app:app", "--shutdown-grace-seconds", "1")
        try:
            api.wait_healthy(WAIT_S)
            yield api, received, prefix
        finally:
            worker.stop()
            api.stop()


def _attr(span: Span, key: str) -> Any:
    for attribute in span.attributes:
        if attribute.key == key:
            value = attribute.value
            return getattr(value, value.WhichOneof("value"))
    return None


def _of_job(received: Received, name: str, job_id: str) -> list[Span]:
    """The spans of this name in the job's trace (its picks name it), by attempt."""
    traces = {s.trace_id for s in received.named("jobledger.pick")
              if _attr(s, "jobledger.job.id") == job_id}
    return sorted((s for s in received.named(name) if s.trace_id in traces),
                  key=lambda s: _attr(s, "jobledger.attempt"))


def test_the_api_and_the_worker_join_one_trace_per_job(
    traced: tuple[ApiProcess, Received, str],
) -> None:
    api, received, _ = traced
    task = {"task_type": "fails_once", "max_retries": 2}
    job_id = api.http.post("/api/v1/tasks", json=task).raise_for_status().json()["task_id"]
    poll(lambda: api.get(f"/api/v1/tasks/{job_id}")["status"] == "completed", WAIT_S)
    poll(lambda: len(_of_job(received, "jobledger.finish", job_id)) == 2, WAIT_S)

    (post,) = received.named("POST /api/v1/tasks")
    (enqueue,) = received.named("jobledger.enqueue")
    picks = _of_job(received, "jobledger.pick", job_id)
    attempts = _of_job(received, "jobledger.attempt", job_id)
    finishes = _of_job(received, "jobledger.finish", job_id)
    assert post.kind == KIND_SERVER and enqueue.kind == KIND_PRODUCER
    assert enqueue.parent_span_id == post.span_id
    for pick, attempt, finish in zip(picks, attempts, finishes, strict=True):
        assert pick.parent_span_id == enqueue.span_id  # across the two processes
        assert attempt.parent_span_id == pick.span_id
        assert finish.parent_span_id == attempt.span_id
    assert {s.trace_id for s in [post, enqueue, *picks, *attempts, *finishes]} == {post.trace_id}
    assert [_attr(s, "jobledger.attempt") for s in attempts] == [1, 2]
    assert attempts[0].status.code == attempts[0].status.STATUS_CODE_ERROR
    assert [link.span_id for link in attempts[1].links] == [attempts[0].span_id]
    with received.lock:
        by_service = {(service, span.name) for service, span in received.spans}
    assert {("api", "POST /api/v1/tasks"), ("worker", "jobledger.attempt")} <= by_service
    sends = [s for s in received.named(f"send {_jobs_topic(traced[2])}")
             if _attr(s, "messaging.system") == "kafka"]
    assert sends and all(_attr(s, "messaging.destination.name") for s in sends)
    receives = received.named(f"receive {_jobs_topic(traced[2])}")
    assert receives and _attr(receives[0], "messaging.kafka.offset") is not None
    assert _attr(receives[0], "messaging.destination.partition.id") is not None


def _jobs_topic(prefix: str) -> str:
    return f"{prefix}{JOBS}"


def test_a_kcat_records_traceparent_header_is_the_jobs_trace(
    traced: tuple[ApiProcess, Received, str], kcat_broker: TansuBroker,
) -> None:
    api, received, prefix = traced
    kcat = shutil.which("kcat")
    assert kcat, "kcat is not installed: apt-get install -y kcat"
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    job_id = uuid7()
    record = {"id": uuid7(), "key": job_id, "time": "2026-01-15T09:30:00Z",
              "actor": {"kind": "client", "id": "kcat"},
              "event": {"type": "JobEnqueued", "job_id": job_id, "task_type": "noop"}}
    asyncio.run(_kcat_with_header(kcat, kcat_broker, _jobs_topic(prefix), job_id,
                                  json.dumps(record).encode(),
                                  f"traceparent=00-{trace_id}-{parent_id}-01"))
    (pick,) = poll(lambda: _of_job(received, "jobledger.pick", job_id), WAIT_S)
    assert pick.trace_id.hex() == trace_id
    assert pick.parent_span_id.hex() == parent_id


async def _kcat_with_header(kcat: str, broker: TansuBroker, topic: str, key: str,
                            value: bytes, header: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        kcat, "-P", "-b", broker.bootstrap, "-t", topic, "-k", key, "-H", header,
        "-X", "topic.partitioner=murmur2_random", "-X", "acks=all",
        stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        _, err = await asyncio.wait_for(proc.communicate(value + b"\n"), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
