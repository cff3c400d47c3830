"""`jobledger migrate --to kafka://...` (issue 22, section 4), on the test broker: a history
with every event kind, migrated, replays to the embedded replay's checksums with the same
chain; a migration killed with SIGKILL half-way and run again leaves every partition with
each record once, in order; a key keeps its partition for the Kafka mode's new events."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
import pytest

from jobledger.schemas import ActorKind, JobDue, JobEnqueued, JobStatus, encode
from jobledger.services.cli.common import Exit
from jobledger.services.cli.main import main
from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext
from jobledger.services.log.kafka import KafkaConfig, KafkaLogBackend, existing_topics
from jobledger.services.log.protocol import Entry
from jobledger.services.log.sqlite import SQLiteLogBackend
from jobledger.services.replay.rebuild import replay, replay_topics
from jobledger.services.runtime.dispatcher import DispatcherConfig
from tests.support.audit_history import SERVE_PARTITIONS, write_history
from tests.support.builders import envelope
from tests.support.harness import wait_until
from tests.support.kafka_broker import TansuBroker, unique_prefix
from tests.support.kafka_harness import kafka_config, node_config, started

WAIT_S = 30.0  # for a node to catch up
KILL_WITHIN_S = 60.0  # bounds the wait for the first records to land


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def migrate_args(db: Path, broker: TansuBroker, prefix: str) -> list[str]:
    return ["migrate", "--db", str(db), "--to", f"kafka://{broker.bootstrap}",
            "--topic-prefix", prefix, "--no-idempotence"]


def heads(out: str) -> list[str]:
    return [line for line in out.splitlines() if "  OK" in line]


def test_a_migrated_history_replays_to_the_same_checksums_and_chain(
        tmp_path: Path, kafka_broker: TansuBroker, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "log.db"
    records = asyncio.run(write_history(db))
    prefix = unique_prefix("migrate")
    code, out, err = run(capsys, *migrate_args(db, kafka_broker, prefix))
    assert code == Exit.OK, err
    assert f"{records} records copied, 0 already there" in out

    embedded = asyncio.run(replay(db, tmp_path / "embedded.replay.db", show_progress=False))
    config = kafka_config(kafka_broker, prefix, partitioner="crc32")
    on_kafka = asyncio.run(replay_topics(config, tmp_path / "kafka.replay.db", False))
    assert on_kafka == embedded

    # The chain continues: the topics' links, computed by their reader, are the file's.
    broker = ["--broker", f"kafka://{kafka_broker.bootstrap}", "--topic-prefix", prefix]
    _, on_file, _ = run(capsys, "verify", "--db", str(db))
    code, on_topics, _ = run(capsys, "verify", *broker)
    assert code == Exit.OK and heads(on_topics) == heads(on_file)
    _, anchor, _ = run(capsys, "anchor", "--db", str(db))
    assert run(capsys, "verify", *broker, "--anchor", anchor)[0] == Exit.OK

    # Exported from the topics, the history is the file's, links included.
    assert _placeless(run(capsys, "export", *broker)[1]) == \
        _placeless(run(capsys, "export", "--db", str(db))[1])

    # Run again: nothing copied twice, everything already there checked.
    code, out, _ = run(capsys, *migrate_args(db, kafka_broker, prefix))
    assert code == Exit.OK and f"0 records copied, {records} already there and checked" in out


def _placeless(export: str) -> list[dict[str, object]]:
    """Export lines without their record time (a broker may stamp its own)."""
    lines = [json.loads(line) for line in export.splitlines()]
    assert lines
    return [{k: v for k, v in line.items() if k != "timestamp_ms"} for line in lines]


async def test_a_key_keeps_its_partition_on_kafka(tmp_path: Path,
                                                  kafka_broker: TansuBroker) -> None:
    db = tmp_path / "log.db"
    await write_history(db)
    prefix = unique_prefix("keys")
    code = await asyncio.to_thread(main, migrate_args(db, kafka_broker, prefix))
    assert code == Exit.OK
    embedded = await SQLiteLogBackend.open(db, {}, read_only=True)
    config = kafka_config(kafka_broker, prefix, partitioner="crc32")
    kafka = await KafkaLogBackend.open(config, {"jobs": config.partitions})
    try:
        assert kafka.topic("jobs").partitions == SERVE_PARTITIONS["jobs"]
        for key in ("gold-dead", "gold-done", "j1", "any-new-job"):
            expected = embedded.topic("jobs").partition_for(key)
            assert kafka.topic("jobs").partition_for(key) == expected
            (position,) = await kafka.topic("jobs").append(
                [Entry(key, encode(envelope(JobDue(key))))])
            assert position[0] == expected
    finally:
        await kafka.close()
        await embedded.close()


async def test_migrate_refuses_topics_of_another_log(tmp_path: Path,
                                                     kafka_broker: TansuBroker) -> None:
    first, second = tmp_path / "a.db", tmp_path / "b.db"
    await write_history(first)
    await write_history(second, [encode(envelope(JobDue(f"other-{i}"))) for i in range(40)])
    prefix = unique_prefix("other")
    assert await asyncio.to_thread(main, migrate_args(first, kafka_broker, prefix)) == Exit.OK
    code = await asyncio.to_thread(main, migrate_args(second, kafka_broker, prefix))
    assert code == Exit.FAILED


@pytest.mark.slow
def test_a_migration_killed_half_way_and_run_again_copies_each_record_once(
        tmp_path: Path, kafka_broker: TansuBroker, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "log.db"
    count = 60_000
    asyncio.run(_write_jobs(db, count))
    prefix = unique_prefix("kill")
    config = kafka_config(kafka_broker, prefix, partitioner="crc32")
    child = subprocess.Popen(
        [sys.executable, "-m", "jobledger.services.cli.main",
         *migrate_args(db, kafka_broker, prefix)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        landed = asyncio.run(_wait_for_some(config, count))
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        assert child.stderr is not None
        child.stderr.close()
    assert 0 < landed < count, "the migration was not killed half-way"
    assert child.returncode == -signal.SIGKILL
    code, out, err = run(capsys, *migrate_args(db, kafka_broker, prefix))
    assert code == Exit.OK, err
    assert asyncio.run(_copies(config)) == asyncio.run(_originals(db))


async def _wait_for_some(config: KafkaConfig, count: int) -> int:
    """Poll the topics (once the migration made them) until some records landed; how many."""
    deadline = time.monotonic() + KILL_WITHIN_S
    while "jobs" not in await existing_topics(config):
        if time.monotonic() > deadline:
            return 0
        await asyncio.sleep(0.01)
    backend = await KafkaLogBackend.open(replace(config, partitions=1), {"jobs": 1})
    try:
        while time.monotonic() < deadline:
            landed = sum((await backend.topic("jobs").end_offsets()).values())
            if landed:
                return landed
            await asyncio.sleep(0.01)
        return 0
    finally:
        await backend.close()


async def _write_jobs(db: Path, count: int) -> None:
    backend = await SQLiteLogBackend.open(db, SERVE_PARTITIONS)
    try:
        for first in range(0, count, 5000):
            await backend.topic("jobs").append([
                Entry(f"job-{i}", encode(envelope(JobDue(f"job-{i}"), i)))
                for i in range(first, min(count, first + 5000))])
    finally:
        await backend.close()


async def _copies(config: KafkaConfig) -> dict[int, list[tuple[int, str, bytes]]]:
    backend = await KafkaLogBackend.open(replace(config, partitions=1), {"jobs": 1})
    try:
        return await _records(backend.topic("jobs"))
    finally:
        await backend.close()


async def _originals(db: Path) -> dict[int, list[tuple[int, str, bytes]]]:
    backend = await SQLiteLogBackend.open(db, {}, read_only=True)
    try:
        return await _records(backend.topic("jobs"))
    finally:
        await backend.close()


async def _records(log: object) -> dict[int, list[tuple[int, str, bytes]]]:
    out: dict[int, list[tuple[int, str, bytes]]] = {}
    for part, end in (await log.end_offsets()).items():  # type: ignore[attr-defined]
        rows = out.setdefault(part, [])
        while len(rows) < end:
            got = await log.read(part, len(rows), 5000)  # type: ignore[attr-defined]
            rows += [(r.offset, r.key, r.value) for r in got]
    return out


async def test_a_kafka_api_node_serves_the_migrated_read_models(
        tmp_path: Path, kafka_broker: TansuBroker) -> None:
    """After the migration, an API node of the Kafka mode (crc32) folds the topics into the
    read models the embedded replay builds, table for table."""
    db = tmp_path / "log.db"
    await write_history(db)
    prefix = unique_prefix("api")
    assert await asyncio.to_thread(main, migrate_args(db, kafka_broker, prefix)) == Exit.OK
    embedded = await replay(db, tmp_path / "embedded.replay.db", show_progress=False)
    config = kafka_config(kafka_broker, prefix, partitioner="crc32")
    node = await started(node_config(config, tmp_path / "views.db"))
    try:
        assert await node.caught_up(WAIT_S)
        assert await node.store.checksums() == embedded
    finally:
        await node.stop()


async def test_a_pending_job_of_the_embedded_log_runs_on_kafka(
        tmp_path: Path, kafka_broker: TansuBroker) -> None:
    """Unfinished jobs carry on: a job still pending when the embedded log stopped is
    picked by a Kafka worker (--partitioner crc32) and completes, its new events in the
    partition its history is in."""
    db = tmp_path / "log.db"
    job_id = "left-pending"
    enqueued = JobEnqueued(job_id=job_id, task_type="greet", payload=msgspec.Raw(b'"you"'))
    await write_history(db, [encode(envelope(enqueued, actor=ActorKind.API))])
    prefix = unique_prefix("pending")
    assert await asyncio.to_thread(main, migrate_args(db, kafka_broker, prefix)) == Exit.OK

    app = App()

    @app.job("greet")
    async def greet(ctx: JobContext, payload: Any) -> str:
        return f"hello {payload}"

    config = kafka_config(kafka_broker, prefix, partitioner="crc32")
    api = await started(node_config(config, tmp_path / "api.db"))
    try:
        worker = await started(node_config(
            config, tmp_path / "worker.db", run_projections=False, run_workers=True,
            dispatcher=DispatcherConfig(shutdown_grace_seconds=0)), app)
        try:
            done = await wait_until(api, job_id, JobStatus.COMPLETED, WAIT_S)
            assert json.loads(bytes(done.result or b"null")) == "hello you"
        finally:
            await worker.stop()
    finally:
        await api.stop()
    embedded = await SQLiteLogBackend.open(db, {}, read_only=True)
    partition = embedded.topic("jobs").partition_for(job_id)  # where its history is
    await embedded.close()
    history = await _copies(config)
    parts = {part for part, rows in history.items() for _, key, _ in rows if key == job_id}
    assert parts == {partition}
    assert sum(key == job_id for _, key, _ in history[partition]) >= 3  # enqueued, picked, done
