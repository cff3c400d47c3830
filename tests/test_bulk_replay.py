"""The replay's bulk path (services/replay/bulk.py) gives the read models the live
projector gives, table for table: every event type, retries, lease expiries, cancels,
requeues of finished jobs, duplicates, paused queues, logs, workers, undecodable and
misplaced records; folded in chunks of any size (finished jobs are written and dropped at
the end of each chunk, and read back when a later event needs them), in a thread or in
worker processes."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobledger.schemas import (
    JOBS,
    ActorKind,
    JobEnqueued,
    JobLogged,
    JobPicked,
    JobRequeued,
    JobSucceeded,
    LogLevel,
    WorkerHeartbeat,
    WorkerStarted,
    encode,
)
from jobledger.services.log.protocol import Entry
from jobledger.services.replay import bulk as bulk_replay
from jobledger.services.replay.rebuild import checksums, rebuild, rebuild_from
from tests.support.builders import append, at, envelope, open_log

from .test_projection_property import Appended, histories


async def write_log(path: Path, history: Sequence[Appended]) -> None:
    """The jobs history, with logs and workers, garbage in a jobs partition, an event on
    the wrong topic and one of a version newer than this build knows."""
    backend = await open_log(path)
    try:
        jobs = backend.topic(JOBS)
        await jobs.append([Entry(a.env.key, encode(a.env), a.partition) for a in history])
        enqueued = encode(envelope(JobEnqueued(job_id="job-n", task_type="t")))
        newer = enqueued.replace(b'"v":1', b'"v":99')
        await jobs.append([Entry("job-a", b"{oops"), Entry("job-b", b'{"id": 1}'),
                           Entry("w1", encode(envelope(WorkerStarted(worker_id="w1"))), 1),
                           Entry("job-n", newer, 0)])
        await append(backend, [
            envelope(WorkerStarted(worker_id="w1", concurrency=2), 1, actor=ActorKind.WORKER),
            envelope(WorkerHeartbeat(worker_id="w1", current_jobs=["job-a"]), 2),
            envelope(JobLogged(job_id="job-a", attempt=1, level=LogLevel.INFO, message="hi"), 3),
            envelope(JobLogged(job_id="job-b", attempt=2, level=LogLevel.ERROR, message="no",
                               details={"k": [1, 2]}), 4),
        ])
    finally:
        await backend.close()


async def live_and_bulk(
    tmp: Path, history: Sequence[Appended], processes: int
) -> tuple[dict[str, str], dict[str, str]]:
    """Checksums of the log's read models rebuilt by the projector, then in bulk."""
    log = tmp / "log.db"
    await write_log(log, history)
    await rebuild_from(await open_log(log), tmp / "live.db", show_progress=False)
    await rebuild(log, tmp / "bulk.db", show_progress=False, processes=processes)
    return await checksums(tmp / "live.db"), await checksums(tmp / "bulk.db")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), chunk=st.integers(1, 9))
def test_the_bulk_fold_gives_the_live_projectors_tables_in_chunks_of_any_size(
    history: list[Appended], chunk: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setattr(bulk_replay, "CHUNK", chunk)
        live, bulk = asyncio.run(live_and_bulk(Path(tmp), history, processes=0))
    assert bulk == live


EMPTY = "e3b0c44298fc1c14"  # the checksum of a table without rows


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories())
def test_the_bulk_fold_in_two_worker_processes_gives_the_live_projectors_tables(
    history: list[Appended]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        live, bulk = asyncio.run(live_and_bulk(Path(tmp), history, processes=2))
        left = sorted(p.name for p in Path(tmp).iterdir() if p.name.startswith("bulk"))
    assert bulk == live
    assert EMPTY not in (live["quarantine"], live["run_logs"], live["workers"], live["job_events"])
    assert left == ["bulk.db"]  # no scratch file left


def test_a_failed_worker_fails_the_replay_and_leaves_the_output_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log, out = tmp_path / "log.db", tmp_path / "views.db"
    asyncio.run(write_log(log, []))
    out.write_bytes(b"the previous read models")
    monkeypatch.setattr(sys, "executable", "/bin/false")  # every worker exits with status 1
    with pytest.raises(RuntimeError, match="a replay worker failed"):
        asyncio.run(rebuild(log, out, show_progress=False, processes=2))
    assert out.read_bytes() == b"the previous read models"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("views")) == ["views.db"]


def test_a_log_whose_keys_are_not_the_job_ids_is_replayed_by_the_projector(tmp_path: Path) -> None:
    """The workers split the jobs by key; a record keyed other than its job id would leave
    part of its job's events to another worker, so the replay goes the projector's way."""
    events = [envelope(JobEnqueued(job_id=f"job-{n}", task_type="t"), n) for n in range(40)]
    late = envelope(
        JobPicked(job_id="job-0", attempt=1, worker_id="w", lease_expires_at=at(99)), 50)

    async def scenario() -> tuple[dict[str, str], dict[str, str]]:
        backend = await open_log(tmp_path / "log.db")
        try:
            await append(backend, events)
            jobs = backend.topic(JOBS)
            await jobs.append([Entry("zz-not-job-0", encode(late), jobs.partition_for("job-0"))])
        finally:
            await backend.close()
        return await live_and_bulk(tmp_path, [], processes=2)

    live, bulk = asyncio.run(scenario())
    assert bulk == live


def test_a_job_whose_events_span_two_partitions_is_folded_as_the_projector_does(
    tmp_path: Path
) -> None:
    """The projector applies partition after partition to one store, so a job finished in
    one partition is requeued by an event in the next; the bulk fold reads it back too."""
    job = "job-x"
    lives = [JobEnqueued(job_id=job, task_type="t"),
             JobPicked(job_id=job, attempt=1, worker_id="w", lease_expires_at=at(99)),
             JobSucceeded(job_id=job, attempt=1)]
    again = [JobRequeued(job_id=job, task_type="t", attempt=1),
             JobEnqueued(job_id=job, task_type="t")]

    async def scenario() -> tuple[dict[str, str], dict[str, str]]:
        backend = await open_log(tmp_path / "log.db")
        try:
            await backend.topic(JOBS).append(
                [Entry(job, encode(envelope(e, i)), 0) for i, e in enumerate(lives)]
                + [Entry(job, encode(envelope(e, 10 + i)), 1) for i, e in enumerate(again)])
        finally:
            await backend.close()
        return await live_and_bulk(tmp_path, [], processes=0)

    live, bulk = asyncio.run(scenario())
    assert bulk == live


def test_a_worker_looks_in_the_file_for_every_job_it_wrote(tmp_path: Path) -> None:
    """The filter of ids written (bulk_replay._SharedFileWriter) may say "maybe" of a job never
    written, never "no" of one written: a job read back is one it wrote."""
    import sqlite3

    from jobledger.projections.store import Transaction

    conn = sqlite3.connect(tmp_path / "views.db", isolation_level=None)
    conn.execute("CREATE TABLE t (x)")
    writer = bulk_replay._SharedFileWriter(conn, tmp_path / "views.db.turn")
    written = [f"job-{n}" for n in range(0, 20_000, 2)]
    tx = Transaction()
    tx.many("INSERT INTO t VALUES (?)", [(1,)])
    writer.run(tx, written)
    assert all(writer.maybe_written(job_id) for job_id in written)
    others = [f"job-{n}" for n in range(1, 20_000, 2)]
    assert sum(map(writer.maybe_written, others)) < 10
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
