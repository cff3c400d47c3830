"""Conversions between reducer states and read-model rows (column order = schema.sql)."""

from __future__ import annotations

from typing import Any

import msgspec

from jobledger.schemas import JobStatus, RunStatus, WorkerStatus

from .jobs import JobState
from .queues import QueueState
from .workers import WorkerState

_json = msgspec.json.Encoder()
_list_of_str = msgspec.json.Decoder(list[str])
_list_of_int = msgspec.json.Decoder(list[int])


def _indexes(struct: type[msgspec.Struct], *names: str) -> tuple[int, ...]:
    """Where these fields stand in the struct's field order, which is its row's column
    order (schema.sql): a field added or moved moves its index with it."""
    return tuple(struct.__struct_fields__.index(name) for name in names)


# Indexes of the fields whose column type differs from the field's.
_PAYLOAD, _STATUS, _RESULT, _CANCEL, _RUN_STATUS = _indexes(
    JobState, "payload", "status", "result", "cancel_requested", "run_status")
_WORKER_STATUS, _CURRENT_JOBS, _PARTITIONS = _indexes(
    WorkerState, "status", "current_jobs", "partitions")


JOB_COLUMNS = len(JobState.__struct_fields__) + 1  # the state, then last_offset

# Rows are bound with plain str for enums and bytearray for BLOBs: Python's sqlite3 binds
# exact int, float, str and bytearray directly, but looks every other type up in its
# adapter registry first, holding the GIL (docs/performance.md, "Figures behind the code").
_PLAIN: dict[JobStatus | RunStatus | None, str | None] = {
    member: member.value for enum in (JobStatus, RunStatus) for member in enum
}
_PLAIN[None] = None


def job_row(s: JobState, last_offset: int) -> tuple[Any, ...]:
    row = list(msgspec.structs.astuple(s))
    row[_PAYLOAD] = bytearray(s.payload)
    row[_STATUS] = _PLAIN[s.status]
    row[_RESULT] = bytearray(s.result) if s.result is not None else None
    row[_CANCEL] = int(s.cancel_requested)
    row[_RUN_STATUS] = _PLAIN[s.run_status]
    row.append(last_offset)
    return tuple(row)


def job_from_row(row: tuple[Any, ...]) -> JobState:
    values = list(row[: JOB_COLUMNS - 1])
    values[_PAYLOAD] = msgspec.Raw(row[_PAYLOAD])
    values[_STATUS] = JobStatus(row[_STATUS])
    values[_RESULT] = msgspec.Raw(row[_RESULT]) if row[_RESULT] is not None else None
    values[_CANCEL] = bool(row[_CANCEL])
    values[_RUN_STATUS] = RunStatus(row[_RUN_STATUS]) if row[_RUN_STATUS] is not None else None
    return JobState(*values)


def run_id(job_id: str, attempt: int) -> str:
    return f"{job_id}.{attempt}"


# A run's row, in the runs table's column order: it has no state Struct of its own (it is
# cut from the job's), so its readers find a column by name here rather than by a number.
RUN_COLUMNS = ("run_id", "job_id", "attempt", "task_type", "status", "worker_id", "started_at",
               "ended_at", "processed", "total", "failed", "error", "stack")
RUN_TASK_TYPE, RUN_STATUS, RUN_STARTED_AT, RUN_ENDED_AT = (
    RUN_COLUMNS.index(name) for name in ("task_type", "status", "started_at", "ended_at"))


def run_row(s: JobState) -> tuple[Any, ...]:
    """The row of the state's latest attempt."""
    failed = s.run_status == RunStatus.FAILED
    return (
        run_id(s.job_id, s.attempt), s.job_id, s.attempt, s.task_type, _PLAIN[s.run_status],
        s.worker_id, s.run_started_at, s.run_ended_at, s.processed, s.total, s.failed,
        s.error if failed else None, s.stack if failed else None,
    )


def worker_row(s: WorkerState) -> tuple[Any, ...]:
    row = list(msgspec.structs.astuple(s))
    row[_CURRENT_JOBS] = _json.encode(s.current_jobs)
    row[_PARTITIONS] = _json.encode(s.partitions)
    return tuple(row)


def worker_from_row(row: tuple[Any, ...]) -> WorkerState:
    values = list(row)
    values[_WORKER_STATUS] = WorkerStatus(row[_WORKER_STATUS])
    values[_CURRENT_JOBS] = _list_of_str.decode(row[_CURRENT_JOBS])
    values[_PARTITIONS] = _list_of_int.decode(row[_PARTITIONS])
    return WorkerState(*values)


def queue_row(s: QueueState) -> tuple[Any, ...]:
    return (s.queue, int(s.paused), s.updated_at)
