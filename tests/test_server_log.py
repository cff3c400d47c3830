"""services/runtime/server_log.py: the partition owner's fold logs each end of an attempt
once, as the event log says it, with the fields docs/operations.md lists."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import pytest

from jobledger.projections.jobs import JobState, reduce_job
from jobledger.schemas import (
    Envelope,
    Event,
    JobCancelled,
    JobDue,
    JobEnqueued,
    JobFailed,
    JobLeaseExpired,
    JobPicked,
    JobSucceeded,
)
from jobledger.services.runtime.server_log import ERROR_CHARS, first_line, logging_outcomes
from tests.support.builders import at, envelope

JOB = "job-1"


def _picked(attempt: int) -> JobPicked:
    return JobPicked(job_id=JOB, attempt=attempt, worker_id="w1", lease_expires_at=at(100))


def _fold(events: Iterable[tuple[float, Event]]) -> JobState | None:
    """Fold the events (at their seconds) through the logging reducer, as the owner does."""
    reduce = logging_outcomes(reduce_job)
    state = None
    for seconds, event in events:
        env: Envelope = envelope(event, seconds)
        state = reduce(state, env)
    return state


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.fields for r in caplog.records if r.name == "jobledger.jobs"]  # type: ignore[attr-defined]


def _enqueued(**options: Any) -> tuple[float, Event]:
    return (0, JobEnqueued(job_id=JOB, task_type="send_email", payload=b'{"secret":"x"}',
                           **options))


def test_a_retried_then_dead_lettered_job_gives_one_line_per_failed_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="jobledger")
    _fold([
        _enqueued(max_retries=1),
        (1, _picked(1)),
        (2, JobFailed(job_id=JOB, attempt=1, error="RuntimeError: boom\n  more", retry_at=at(4))),
        (2.5, JobFailed(job_id=JOB, attempt=1, error="late duplicate", retry_at=at(9))),
        (4, JobDue(job_id=JOB)),
        (4, _picked(2)),
        (5, JobFailed(job_id=JOB, attempt=2, error="RuntimeError: boom")),
    ])
    retried, dead = _lines(caplog)
    assert retried == {"event": "job.retried", "task_id": JOB, "task_type": "send_email",
                       "attempt": 1, "worker": "w1", "status": "scheduled",
                       "error": "RuntimeError: boom", "retry_at": "2024-05-01T12:00:04.000Z"}
    assert dead["event"] == "job.dead_letter" and dead["attempt"] == 2
    assert dead["status"] == "dead_letter" and "retry_at" not in dead
    first = caplog.records[0].getMessage()
    assert first == ("task job-1 (send_email) attempt 1 on w1 failed: RuntimeError: boom; "
                     "retry 1 in 2s")
    assert all("secret" not in r.getMessage() and "secret" not in str(r.fields)  # type: ignore[attr-defined]
               for r in caplog.records)


def test_a_permanent_failure_a_lease_expiry_and_a_cancel_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="jobledger")
    _fold([_enqueued(max_retries=0), (1, _picked(1)),
           (2, JobFailed(job_id=JOB, attempt=1, error="ValueError: bad input", permanent=True))])
    _fold([_enqueued(max_retries=0), (1, _picked(1)), (31, JobLeaseExpired(job_id=JOB, attempt=1))])
    _fold([_enqueued(), (1, _picked(1)), (2, JobCancelled(job_id=JOB, attempt=1))])
    _fold([_enqueued(), (1, JobCancelled(job_id=JOB))])
    failed, expired, cancelled, cancelled_waiting = _lines(caplog)
    assert (failed["event"], failed["status"]) == ("job.failed", "failed")
    assert (expired["event"], expired["status"]) == ("job.lease_expired", "dead_letter")
    assert "lease expired" in caplog.records[1].getMessage()
    assert (cancelled["event"], cancelled["attempt"], cancelled["worker"]) == \
        ("job.cancelled", 1, "w1")
    assert (cancelled_waiting["attempt"], cancelled_waiting["worker"]) == (None, None)


def test_completed_jobs_are_logged_at_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    run = [_enqueued(), (1, _picked(1)), (3, JobSucceeded(job_id=JOB, attempt=1))]
    caplog.set_level(logging.INFO, logger="jobledger")
    _fold(run)
    assert _lines(caplog) == []
    caplog.set_level(logging.DEBUG, logger="jobledger")
    _fold(run)
    [completed] = _lines(caplog)
    assert completed["event"] == "job.completed" and completed["seconds"] == 2.0
    assert caplog.records[0].levelno == logging.DEBUG


def test_with_info_off_the_reducer_is_not_wrapped(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing is added to the owner's fold when nothing would be logged."""
    caplog.set_level(logging.WARNING, logger="jobledger")
    assert logging_outcomes(reduce_job) is reduce_job


def test_an_error_shows_its_first_line_clipped() -> None:
    assert first_line("KeyError: 'a'\nTraceback ...") == "KeyError: 'a'"
    clipped = first_line("x" * 1000)
    assert len(clipped) == ERROR_CHARS and clipped.endswith("…")
