"""The embedded projection host: a real SQLite log folded into a real read-model store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from jobledger.projections.queries import Queries
from jobledger.projections.stats import MINUTE_MS
from jobledger.projections.store import ReadModelStore
from jobledger.schemas import (
    JOBS,
    Envelope,
    JobEnqueued,
    JobFailed,
    JobHeartbeat,
    JobLogged,
    JobPicked,
    JobRequeued,
    JobSucceeded,
    LogLevel,
    Progress,
    WorkerStarted,
    WorkerStopped,
    encode,
)
from jobledger.schemas.common import to_ms
from jobledger.services.log.protocol import Entry
from jobledger.services.log.sqlite import SQLiteLogBackend
from jobledger.services.runtime.projector import Projector
from tests.support.builders import append, at, envelope, open_log

JOB = "job-1"


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[SQLiteLogBackend]:
    backend = await open_log(tmp_path / "log.db")
    yield backend
    await backend.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ReadModelStore]:
    store = await ReadModelStore.open(tmp_path / "views.db")
    yield store
    await store.close()


def life(job_id: str = JOB) -> list[Envelope]:
    """One job's whole, successful life: enqueue, pick, heartbeat with progress, a log line
    (on the logs topic), success."""
    return [
        envelope(JobEnqueued(job_id=job_id, task_type="resize", priority=200), 0),
        envelope(JobPicked(job_id=job_id, attempt=1, worker_id="w1", lease_expires_at=at(31)), 1),
        envelope(JobHeartbeat(job_id=job_id, attempt=1, lease_expires_at=at(62),
                              progress=Progress(processed=7, total=10, failed=1)), 32),
        envelope(JobLogged(job_id=job_id, attempt=1, level=LogLevel.INFO, message="halfway",
                           details={"step": 5}), 33),
        envelope(JobSucceeded(job_id=job_id, attempt=1), 40),
    ]


async def rows(store: ReadModelStore, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await store.db.execute_fetchall(sql)]


async def test_catch_up_projects_a_job_life_into_every_table(
    backend: SQLiteLogBackend, store: ReadModelStore
) -> None:
    await append(backend, life())
    await Projector(backend, store).catch_up()

    assert await rows(store, "SELECT status, attempt, worker_id, processed, total, failed,"
                             " started_at, finished_at, lease_expires_at FROM jobs") == [
        ("completed", 1, "w1", 7, 10, 1, to_ms(at(1)), to_ms(at(40)), None)
    ]
    assert await rows(store, "SELECT * FROM runs") == [
        (f"{JOB}.1", JOB, 1, "resize", "COMPLETED", "w1", to_ms(at(1)), to_ms(at(40)),
         7, 10, 1, None, None)
    ]
    assert await rows(store, "SELECT run_id, attempt, level, message, details FROM run_logs") == [
        (f"{JOB}.1", 1, "INFO", "halfway", b'{"step":5}')
    ]
    # Counts move with the job: pending and in_progress went up and down again.
    assert await rows(store, "SELECT * FROM job_counts WHERE count != 0") == [
        ("resize", "completed", 1)
    ]
    minute = to_ms(at(40)) // MINUTE_MS * MINUTE_MS
    assert await rows(store, "SELECT * FROM runs_ended") == [(minute, "COMPLETED", 1)]
    assert await rows(store, "SELECT total_ms, runs FROM processing") == [(39_000, 1)]


async def test_requeue_keeps_the_error_of_the_failed_run(
    backend: SQLiteLogBackend, store: ReadModelStore
) -> None:
    # A requeue clears the job's error for its fresh start; the run that failed is history
    # and keeps its own error.
    await append(backend, [
        envelope(JobEnqueued(job_id=JOB, task_type="resize"), 0),
        envelope(JobPicked(job_id=JOB, attempt=1, worker_id="w1", lease_expires_at=at(31)), 1),
        envelope(JobFailed(job_id=JOB, attempt=1, error="OSError: disk full", permanent=True), 2),
        envelope(JobRequeued(job_id=JOB, task_type="resize", attempt=1), 3),
    ])
    await Projector(backend, store).catch_up()

    assert await rows(store, "SELECT status, error FROM jobs") == [("pending", None)]
    assert await rows(store, "SELECT run_id, status, error FROM runs") == [
        (f"{JOB}.1", "FAILED", "OSError: disk full")
    ]


async def test_checkpoints_record_the_next_offset_of_each_partition(
    backend: SQLiteLogBackend, store: ReadModelStore
) -> None:
    positions = await append(backend, life())
    await Projector(backend, store).catch_up()

    (jobs_partition, _) = positions[0]
    assert await store.checkpoints("jobs") == {jobs_partition: 4}  # 4 jobs-topic events
    (logs_partition, log_offset) = positions[3]
    assert await store.checkpoints("run_logs") == {logs_partition: log_offset + 1}


async def test_undecodable_record_is_quarantined_counted_and_skipped(
    backend: SQLiteLogBackend, store: ReadModelStore
) -> None:
    events = life()
    jobs = backend.topic(JOBS)
    partition = jobs.partition_for(JOB)
    await append(backend, events[:1])
    # A producer wrote garbage between the enqueue and the pick, in the job's partition.
    await jobs.append([Entry(JOB, b"{oops", partition=partition)])
    await append(backend, events[1:])
    projector = Projector(backend, store)

    await projector.catch_up()

    assert projector.quarantined == 1
    quarantined = await rows(store, "SELECT topic, partition, offset, key, value FROM quarantine")
    assert quarantined == [("jobs", partition, 1, JOB, b"{oops")]
    (error,) = (await rows(store, "SELECT error FROM quarantine"))[0]
    assert "not JSON" in error
    # The records after it were still applied.
    assert await rows(store, "SELECT status FROM jobs") == [("completed",)]


async def test_reapplying_the_same_records_changes_nothing(
    backend: SQLiteLogBackend, store: ReadModelStore
) -> None:
    await append(backend, life())
    projector = Projector(backend, store)
    await projector.catch_up()
    before = await store.checksums()
    jobs = backend.topic(JOBS)
    records = [r for p in range(jobs.partitions) for r in await jobs.read(p, 0)]

    # A redelivery to the same projector: the in-memory positions recognise it.
    await projector.apply("jobs", records)
    assert await store.checksums() == before

    # A redelivery after a restart: the checkpoint stored with the rows recognises it.
    restarted = Projector(backend, store)
    await restarted.load()
    await restarted.apply("jobs", records)
    await restarted.catch_up()
    assert await store.checksums() == before


async def test_a_fresh_store_rebuilt_from_the_log_has_equal_checksums(
    backend: SQLiteLogBackend, store: ReadModelStore, tmp_path: Path
) -> None:
    await append(backend, life("job-1") + life("job-2") + life("job-3"))
    await Projector(backend, store).catch_up()

    rebuilt = await ReadModelStore.open(tmp_path / "rebuilt.db")
    try:
        await Projector(backend, rebuilt).catch_up()
        assert await rebuilt.checksums() == await store.checksums()
    finally:
        await rebuilt.close()


async def test_projection_catches_up_from_a_checkpoint_after_a_restart(
    backend: SQLiteLogBackend, store: ReadModelStore, tmp_path: Path
) -> None:
    # Half the life now, half later: a restarted projector resumes where the checkpoint is
    # and ends where a single pass over the whole log ends.
    events = life()
    await append(backend, events[:2])
    await Projector(backend, store).catch_up()
    await append(backend, events[2:])
    restarted = Projector(backend, store)
    await restarted.load()
    await restarted.catch_up()

    single = await ReadModelStore.open(tmp_path / "single.db")
    try:
        await Projector(backend, single).catch_up()
        assert await store.checksums() == await single.checksums()
    finally:
        await single.close()



async def test_the_task_types_workers_declare_are_known_until_the_worker_declares_others(
    backend: SQLiteLogBackend, store: ReadModelStore, tmp_path: Path
) -> None:
    await append(backend, [
        envelope(WorkerStarted(worker_id="w1", task_types=["resize", "email"]), 0),
        envelope(WorkerStarted(worker_id="w2", task_types=["email", "report"]), 1),
        envelope(WorkerStopped(worker_id="w2"), 2),  # what it declared stays known
    ])
    projector = Projector(backend, store)
    await projector.catch_up()
    queries = await Queries.open(tmp_path / "views.db")
    try:
        assert await queries.declared_task_types() == ["email", "report", "resize"]
        # Restarted with other handlers: its new list replaces its old one.
        await append(backend, [envelope(WorkerStarted(worker_id="w1", task_types=["thumb"]), 3)])
        await projector.catch_up()
        assert await queries.declared_task_types() == ["email", "report", "thumb"]
    finally:
        await queries.close()
    assert await rows(store, "SELECT * FROM worker_task_types") == [
        ("w1", "thumb"), ("w2", "email"), ("w2", "report")]


async def test_an_event_on_the_wrong_topic_is_quarantined_and_the_rest_applied(
    backend: SQLiteLogBackend, tmp_path: Path
) -> None:
    misplaced = envelope(WorkerStarted(worker_id="w1"))
    enqueued = envelope(JobEnqueued(job_id=JOB, task_type="t"))
    await backend.topic(JOBS).append(
        [Entry("w1", encode(misplaced), 0), Entry(JOB, encode(enqueued), 0)]
    )
    store = await ReadModelStore.open(tmp_path / "views.db")
    try:
        projector = Projector(backend, store)
        await projector.load()
        await projector.catch_up()
        assert projector.quarantined == 1
        [(error,)] = await store.db.execute_fetchall("SELECT error FROM quarantine")
        assert "WorkerStarted belongs on the workers topic" in error
        assert await store.db.execute_fetchall("SELECT job_id FROM jobs") == [(JOB,)]
    finally:
        await store.close()


async def test_the_cache_keeps_waiting_jobs_without_their_records_and_drops_finished_ones(
    backend: SQLiteLogBackend, store: ReadModelStore
) -> None:
    # Memory with many pending jobs: a decoded payload is a view into its whole record, so
    # a cached state holding it would keep the record alive for as long as the job waits.
    waiting = envelope(JobEnqueued(job_id="waiting", task_type="t", payload={"pad": "x" * 500}), 0)
    await append(backend, [waiting, *life()])
    projector = Projector(backend, store)
    await projector.catch_up()

    cache = projector._cache  # noqa: SLF001 (what the projector keeps between batches)
    assert list(cache) == ["waiting"]  # the finished job was dropped once written
    payload = cache["waiting"].payload
    assert payload.copy() is payload  # owns its bytes: not a view into the record
    assert bytes(payload) == b'{"pad":"' + b"x" * 500 + b'"}'


async def test_new_jobs_are_folded_from_their_envelopes_without_a_lookup(
    backend: SQLiteLogBackend, store: ReadModelStore
) -> None:
    # The enqueue path hands over the envelopes of ids it has just drawn: their records
    # are not decoded again, and their batch needs no SELECT.
    looked_up: list[str] = []
    load_jobs = store.load_jobs

    async def recording_load_jobs(job_ids: Any) -> Any:
        ids = list(job_ids)
        looked_up.extend(ids)
        return await load_jobs(ids)

    store.load_jobs = recording_load_jobs  # type: ignore[method-assign]
    projector = Projector(backend, store)
    # As the producer makes it: not yet placed in the log.
    fresh = envelope(JobEnqueued(job_id="fresh", task_type="t"), partition=-1, offset=-1)
    never = envelope(JobEnqueued(job_id="never-appended", task_type="t"))
    projector.expect_new([fresh, never])
    await append(backend, [fresh, envelope(JobEnqueued(job_id="other", task_type="t"), 1)])
    await projector.catch_up()

    assert looked_up == ["other"]
    assert await rows(store, "SELECT job_id, status FROM jobs ORDER BY job_id") == [
        ("fresh", "pending"), ("other", "pending")]
    partition = backend.topic(JOBS).partition_for("fresh")
    (record,) = await backend.topic(JOBS).read(partition, 0)
    assert record.decoded is fresh and (fresh.partition, fresh.offset) == (partition, 0)
    projector.forget_new([never])  # its append failed
    assert projector._new_jobs == {}  # noqa: SLF001


async def test_new_jobs_beyond_the_limit_are_forgotten(
    backend: SQLiteLogBackend, store: ReadModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A host that never folds them (it projects other partitions) cannot grow without end.
    from jobledger.services.runtime import projector as projector_module

    monkeypatch.setattr(projector_module, "MAX_NEW_JOBS", 2)
    projector = Projector(backend, store)
    a, b, c, d = (envelope(JobEnqueued(job_id=i, task_type="t")) for i in "abcd")
    projector.expect_new([a, b, c])
    projector.expect_new([d])  # over the limit: the earlier ones are decoded as usual
    assert list(projector._new_jobs) == ["d"]  # noqa: SLF001
