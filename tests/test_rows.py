"""Read-model rows (projections/rows.py): a row's columns are its state's fields in order,
so the indexes rows.py converts at are derived from the Structs, and every state comes
back from its row as it went in."""

from __future__ import annotations

import sqlite3

import msgspec
import pytest

from jobledger.projections.jobs import JobState
from jobledger.projections.rows import (
    RUN_COLUMNS,
    RUN_STARTED_AT,
    RUN_STATUS,
    RUN_TASK_TYPE,
    job_from_row,
    job_row,
    run_row,
    worker_from_row,
    worker_row,
)
from jobledger.projections.store import sql_file
from jobledger.projections.workers import WorkerState, WorkerStatus
from jobledger.schemas import JobStatus, RunStatus


def _columns(table: str) -> list[str]:
    conn = sqlite3.connect(":memory:")
    conn.executescript(sql_file("schema.sql"))
    return [name for _, name, *_ in conn.execute(f"PRAGMA table_info({table})")]


@pytest.mark.parametrize(("table", "struct", "extra"), [
    ("jobs", JobState, ["last_offset"]), ("workers", WorkerState, []),
])
def test_a_tables_columns_are_its_states_fields_in_order(
    table: str, struct: type[msgspec.Struct], extra: list[str],
) -> None:
    assert _columns(table) == [*struct.__struct_fields__, *extra]


def test_a_job_comes_back_from_its_row() -> None:
    job = JobState(
        job_id="j1", task_type="t", queue="q", priority=3, payload=msgspec.Raw(b'{"a":1}'),
        status=JobStatus.COMPLETED, created_at=1, updated_at=2, run_at=None,
        timeout_seconds=5.0, max_retries=2, idempotency_key="k", partition=1,
        created_offset=7, attempt=1, result=msgspec.Raw(b"[1]"), cancel_requested=True,
        run_status=RunStatus.COMPLETED,
    )
    row = job_row(job, last_offset=9)
    assert row[-1] == 9
    back = job_from_row(row)
    assert back == job
    assert type(back.status) is JobStatus and type(back.run_status) is RunStatus


def test_a_worker_comes_back_from_its_row() -> None:
    worker = WorkerState(worker_id="w1", hostname="h", pid=4, concurrency=8, registered_at=1,
                         last_heartbeat=2, status=WorkerStatus.ALIVE, current_jobs=["a", "b"],
                         cpu_percent=1.5, memory_mb=30.0)
    row = worker_row(worker)
    assert row[7] == b'["a","b"]'
    assert worker_from_row(row) == worker


def test_the_run_columns_are_the_runs_tables_and_a_run_row_fills_them() -> None:
    assert list(RUN_COLUMNS) == _columns("runs")
    job = JobState(
        job_id="j1", task_type="t", queue="q", priority=3, payload=msgspec.Raw(b"null"),
        status=JobStatus.IN_PROGRESS, created_at=1, updated_at=2, run_at=None,
        timeout_seconds=None, max_retries=None, idempotency_key=None, partition=0,
        created_offset=0, attempt=2, run_status=RunStatus.RUNNING, run_started_at=5,
    )
    row = run_row(job)
    assert len(row) == len(RUN_COLUMNS)
    assert (row[RUN_TASK_TYPE], row[RUN_STATUS], row[RUN_STARTED_AT]) == ("t", "RUNNING", 5)
