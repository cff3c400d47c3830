"""What a server logs: one line per thing an operator may ask about (a node started or
stopped, a worker lost, an attempt ended), each with an event name and fields for
machines beside its message for people. The CLI picks the format (services/cli/logs.py);
the events and fields are listed in docs/operations.md.

Attempts' ends are taken from the partition owner's fold (the dispatcher's reducer), not
from where the dispatcher decides them, so a line says what the event log says, once per
event: an end the log refused, or one fenced out by a later attempt, changes no state and
logs nothing. Only the owner of a partition logs its jobs' ends (in the Kafka mode, the
`worker` holding the partition; an `api` node logs none), and a partition gained from
another owner is folded without logging its history.

Lines carry ids, task types, attempts, workers and the handler's error message (its first
line, clipped); never a payload, a result or a stack.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jobledger.projections.jobs import JobState, Reducer
from jobledger.schemas import (
    Envelope,
    JobCancelled,
    JobFailed,
    JobLeaseExpired,
    JobStatus,
    JobSucceeded,
    LogLevel,
)

if TYPE_CHECKING:
    from jobledger.services.runtime.dispatcher import Dispatcher

jobs_log = logging.getLogger("jobledger.jobs")
S = JobStatus
ERROR_CHARS = 200  # of the error's first line, at most
_ENDS_AT_INFO = frozenset({JobFailed, JobLeaseExpired, JobCancelled})
_ENDS_AT_DEBUG = _ENDS_AT_INFO | {JobSucceeded}


def note(logger: logging.Logger, level: int, event: str, message: str, *args: object,
         **fields: object) -> None:
    """One log line: message (%-formatted with args) for people, event and fields for
    machines. The JSON format writes them all; the text format writes the message alone,
    so it must say everything by itself."""
    if logger.isEnabledFor(level):
        logger.log(level, message, *args, extra={"fields": {"event": event, **fields}})


def logging_outcomes(reduce: Reducer, logger: logging.Logger = jobs_log) -> Reducer:
    """reduce, wrapped to log each end of an attempt it applies. The levels are looked at
    once, here (a busy owner folds thousands of events a second): with info off, reduce
    comes back as it is; with debug off, a completed job costs one set lookup."""
    if not logger.isEnabledFor(logging.INFO):
        return reduce
    logged = _ENDS_AT_DEBUG if logger.isEnabledFor(logging.DEBUG) else _ENDS_AT_INFO

    def reduce_and_log(state: JobState | None, env: Envelope) -> JobState | None:
        new = reduce(state, env)
        if new is not state and type(env.event) in logged and new is not None:
            log_outcome(logger, env.event, new)
        return new

    return reduce_and_log


def log_outcome(logger: logging.Logger, event: object, new: JobState) -> None:
    """The line of one applied end of an attempt: event, and new, the job's state after it."""
    fields: dict[str, Any] = {
        "task_id": new.job_id, "task_type": new.task_type, "attempt": new.attempt,
        "worker": new.worker_id, "status": new.status.value}
    who = f"task {new.job_id} ({new.task_type}) attempt {new.attempt} on {new.worker_id}"
    match event:
        case JobSucceeded():
            seconds = _seconds(new.run_started_at, new.run_ended_at)
            note(logger, logging.DEBUG, "job.completed", "%s completed in %.3fs", who, seconds,
                 **fields, seconds=seconds)
        case JobFailed() | JobLeaseExpired():
            _log_failure(logger, who, event, new, fields)
        case JobCancelled():
            if event.attempt is None:  # it had not started
                who = f"task {new.job_id} ({new.task_type})"
                fields.update(attempt=None, worker=None)
            note(logger, logging.INFO, "job.cancelled", "%s cancelled", who, **fields)


def _log_failure(logger: logging.Logger, who: str, event: object, new: JobState,
                 fields: dict[str, Any]) -> None:
    error = fields["error"] = first_line(new.error or "")
    if new.status == S.SCHEDULED:
        assert new.run_at is not None  # a scheduled job has its time
        fields["retry_at"] = iso_utc(new.run_at / 1000)
        wait = (new.run_at - new.updated_at) / 1000  # both the event's time
        name, then = "job.retried", f"retry {new.retry_count} in {wait:.3g}s"
    elif new.status == S.FAILED:
        name, then = "job.failed", "a permanent error: no retry"
    else:
        failed = f"{new.retry_count} failed attempt" + ("s" if new.retry_count != 1 else "")
        name, then = "job.dead_letter", f"dead letter after {failed}"
    what = f"failed: {error}"
    if isinstance(event, JobLeaseExpired):  # its status says what follows
        name, what = "job.lease_expired", "lease expired (no heartbeat)"
    note(logger, logging.INFO, name, "%s %s; %s", who, what, then, **fields)


def first_line(text: str) -> str:
    """An error message as a log line shows it: its first line, at most ERROR_CHARS."""
    line = text.split("\n", 1)[0]
    return line if len(line) <= ERROR_CHARS else line[:ERROR_CHARS - 1] + "…"


def _seconds(start_ms: int | None, end_ms: int | None) -> float:
    return 0.0 if start_ms is None or end_ms is None else (end_ms - start_ms) / 1000


def iso_utc(seconds: float) -> str:
    """A Unix time as log lines write it: 2025-06-01T12:00:00.123Z."""
    stamp = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


handlers_log = logging.getLogger("jobledger.handlers")
_HANDLER_LEVELS = {LogLevel.TRACE: logging.DEBUG, LogLevel.INFO: logging.INFO,
                   LogLevel.WARN: logging.WARNING, LogLevel.ERROR: logging.ERROR,
                   LogLevel.FATAL: logging.CRITICAL}


def log_handler_line(task_id: str, task_type: str, attempt: int, worker: str,
                     level: LogLevel, message: str, details: dict[str, Any]) -> None:
    """A handler's ctx.log line, in the server's log as well as in its run's (JobLogged):
    `trace` is debug, `warn` warning, `fatal` critical. Logged where the handler's context
    is current (its task, or its thread's context carried to the loop), so a JSON line
    gets the span of its attempt."""
    note(handlers_log, _HANDLER_LEVELS[level], "job.log", "task %s (%s) attempt %d on %s: %s",
         task_id, task_type, attempt, worker, message, task_id=task_id, task_type=task_type,
         attempt=attempt, worker=worker, details=details)


node_log = logging.getLogger("jobledger.node")
workers_log = logging.getLogger("jobledger.workers")


def log_started(where: str, task_types: Collection[str], dispatcher: Dispatcher | None,
                **fields: object) -> None:
    """A node is up: where its log and read models are (where, and fields for machines),
    and what it runs."""
    worker, slots = None, 0
    if dispatcher is not None:
        worker, slots = dispatcher.config.worker_id, dispatcher.config.concurrency
    runs = f"{slots} worker slots as worker {worker}" if worker else "no worker slots"
    note(node_log, logging.INFO, "node.started", "started: %s; %d task types; %s", where,
         len(task_types), runs, **fields, task_types=sorted(task_types), worker=worker,
         concurrency=slots)


def log_stopping(dispatcher: Dispatcher | None) -> None:
    """Before the dispatcher stops: how many attempts it lets finish, for how long."""
    running = len(dispatcher.executor.running) if dispatcher is not None else 0
    if dispatcher is None or not running:
        note(node_log, logging.INFO, "node.stopping", "stopping", running=running)
        return
    grace = dispatcher.config.shutdown_grace_seconds
    note(node_log, logging.INFO, "node.stopping", "stopping: %d running jobs get up to %gs to "
         "finish; the rest are retried once their leases expire", running, grace,
         running=running, worker=dispatcher.config.worker_id)


def log_stopped() -> None:
    note(node_log, logging.INFO, "node.stopped", "stopped")


def log_worker_lost(worker_id: str, why: str) -> None:
    """A worker marked lost (WorkerLost appended): why says how its end was noticed."""
    note(workers_log, logging.INFO, "worker.lost", "worker %s lost: %s", worker_id, why,
         worker=worker_id)
