"""The job lifecycle: schemas/lifecycle.py's TRANSITIONS table against the jobs reducer.

The table is the specification; these tests derive every allowed move from it and show,
through projections.jobs.reduce_job, that the reducer makes exactly those moves and no
others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest

from jobledger.projections.jobs import LEASE_EXPIRED_ERROR, JobState, reduce_job
from jobledger.schemas import (
    Event,
    JobCancelled,
    JobCancelRequested,
    JobDue,
    JobEnqueued,
    JobFailed,
    JobHeartbeat,
    JobLeaseExpired,
    JobPicked,
    JobRequeued,
    JobStatus,
    JobSucceeded,
    Progress,
    RunStatus,
)
from jobledger.schemas.envelope import event_types
from jobledger.schemas.lifecycle import NEW, ONLY, TERMINAL, TRANSITIONS, WAITING, WHICH
from tests.support.builders import at, envelope

S = JobStatus
JOB = "job-1"

# --- building a job in each state through the reducer itself ------------------------------


def fold(events: Iterable[Event], state: JobState | None = None, start: int = 0) -> JobState:
    """Apply events one second apart; the state must exist afterwards."""
    for i, event in enumerate(events, start):
        state = reduce_job(state, envelope(event, i, offset=i))
    assert state is not None
    return state


def enqueue(run_at_seconds: float | None = None) -> JobEnqueued:
    run_at = at(run_at_seconds) if run_at_seconds is not None else None
    return JobEnqueued(job_id=JOB, task_type="resize", run_at=run_at)


def pick(attempt: int) -> JobPicked:
    return JobPicked(job_id=JOB, attempt=attempt, worker_id="w1", lease_expires_at=at(1000))


# Event sequences that bring a new job to each status, built from the public events only,
# so the starting states are ones the reducer really produces.
PATHS: dict[JobStatus, list[Event]] = {
    S.SCHEDULED: [enqueue(run_at_seconds=3600)],
    S.PENDING: [enqueue()],
    S.IN_PROGRESS: [enqueue(), pick(1)],
    S.COMPLETED: [enqueue(), pick(1), JobSucceeded(job_id=JOB, attempt=1)],
    S.FAILED: [enqueue(), pick(1), JobFailed(job_id=JOB, attempt=1, error="bad", permanent=True)],
    S.DEAD_LETTER: [enqueue(), pick(1), JobFailed(job_id=JOB, attempt=1, error="boom")],
    S.CANCELLED: [enqueue(), JobCancelled(job_id=JOB)],
}


def job_in(status: JobStatus) -> JobState:
    state = fold(PATHS[status])
    assert state.status == status
    return state


# --- the events of each type a dispatcher or worker could send in a given state -----------

Variant = Callable[[JobState | None], Event]


def _attempt(state: JobState | None) -> int:
    """The attempt an event about the running (or latest) attempt quotes."""
    return max(1, state.attempt if state is not None else 1)


def _cancel(state: JobState | None) -> Event:
    # A waiting job is cancelled with no attempt; a running one names the attempt stopped.
    running = state is not None and state.status == S.IN_PROGRESS
    return JobCancelled(job_id=JOB, attempt=_attempt(state) if running else None)


VARIANTS: dict[type[Event], list[Variant]] = {
    JobEnqueued: [lambda s: enqueue(), lambda s: enqueue(run_at_seconds=3600)],
    JobDue: [lambda s: JobDue(job_id=JOB)],
    JobPicked: [lambda s: pick(s.attempt + 1 if s is not None else 1)],
    JobSucceeded: [lambda s: JobSucceeded(job_id=JOB, attempt=_attempt(s))],
    JobFailed: [
        lambda s: JobFailed(job_id=JOB, attempt=_attempt(s), error="e", retry_at=at(7200)),
        lambda s: JobFailed(job_id=JOB, attempt=_attempt(s), error="e"),
        lambda s: JobFailed(job_id=JOB, attempt=_attempt(s), error="e", permanent=True),
    ],
    JobLeaseExpired: [
        lambda s: JobLeaseExpired(job_id=JOB, attempt=_attempt(s), retry_at=at(7200)),
        lambda s: JobLeaseExpired(job_id=JOB, attempt=_attempt(s)),
    ],
    JobCancelled: [_cancel],
    JobRequeued: [
        lambda s: JobRequeued(job_id=JOB, task_type="resize", attempt=s.attempt if s else 0)
    ],
}
MOVING_EVENTS = list(VARIANTS)  # the event types that can change a job's status
SOURCES: list[JobStatus | None] = [NEW, *JobStatus]


def start(source: JobStatus | None) -> JobState | None:
    return None if source is NEW else job_in(source)


def outcomes(
    source: JobStatus | None, event_type: type[Event]
) -> list[tuple[JobState | None, JobState | None]]:
    """(before, after) for every variant of event_type applied in source."""
    pairs = []
    for variant in VARIANTS[event_type]:
        before = start(source)
        pairs.append((before, reduce_job(before, envelope(variant(before), 100, offset=100))))
    return pairs


# --- the table itself ----------------------------------------------------------------------


def test_every_status_appears_in_the_table() -> None:
    seen = {dest for dests in TRANSITIONS.values() for dest in dests}
    seen |= {src for src, _ in TRANSITIONS if src is not NEW}
    assert seen == set(JobStatus)


def test_table_names_only_events_of_the_log() -> None:
    assert {event for _, event in TRANSITIONS} <= set(event_types())


def test_the_notes_name_moves_of_the_table() -> None:
    # WHICH explains each destination of a move with several; ONLY narrows a move.
    several = {(event, dest) for (_, event), dests in TRANSITIONS.items() if len(dests) > 1
               for dest in dests}
    assert set(WHICH) == several
    assert set(ONLY) <= set(TRANSITIONS)


def test_every_status_is_reachable_from_new_through_the_table() -> None:
    reached: set[JobStatus | None] = {NEW}
    frontier: list[JobStatus | None] = [NEW]
    while frontier:
        src = frontier.pop()
        for (s, _), dests in TRANSITIONS.items():
            for dest in dests:
                if s == src and dest not in reached:
                    reached.add(dest)
                    frontier.append(dest)
    assert reached == {NEW, *JobStatus}


def test_the_state_builders_cover_every_status() -> None:
    # Guards the parametrisation below: a status without a path would go untested.
    assert set(PATHS) == set(JobStatus)


# --- the reducer against the table ---------------------------------------------------------


def _id(value: object) -> str:
    if value is NEW:
        return "new"
    return value.__name__ if isinstance(value, type) else str(value)


@pytest.mark.parametrize(("source", "event_type"), list(TRANSITIONS), ids=_id)
def test_allowed_event_moves_to_a_listed_destination(
    source: JobStatus | None, event_type: type[Event]
) -> None:
    allowed = TRANSITIONS[(source, event_type)]
    reached: set[JobStatus] = set()
    for _, after in outcomes(source, event_type):
        assert after is not None
        assert after.status in allowed
        reached.add(after.status)
    # Every listed destination is reachable by some variant: the table is not too generous.
    assert reached == allowed


NOT_ALLOWED = [
    (src, ev) for src in SOURCES for ev in MOVING_EVENTS if (src, ev) not in TRANSITIONS
]


@pytest.mark.parametrize(("source", "event_type"), NOT_ALLOWED, ids=_id)
def test_event_not_in_the_table_returns_the_same_state(
    source: JobStatus | None, event_type: type[Event]
) -> None:
    for before, after in outcomes(source, event_type):
        assert after is before


@pytest.mark.parametrize("source", SOURCES, ids=_id)
def test_heartbeat_and_cancel_request_never_change_the_status(source: JobStatus | None) -> None:
    # They are not in the table because they renew a lease or set a flag, never move a job.
    before = start(source)
    for event in (
        JobHeartbeat(job_id=JOB, attempt=_attempt(before), lease_expires_at=at(2000)),
        JobCancelRequested(job_id=JOB),
    ):
        after = reduce_job(before, envelope(event, 100))
        assert (after.status if after else None) == (before.status if before else None)


# --- named cases ---------------------------------------------------------------------------


def test_success_for_a_pending_job_returns_the_same_object() -> None:
    pending = job_in(S.PENDING)
    assert reduce_job(pending, envelope(JobSucceeded(job_id=JOB, attempt=1), 50)) is pending


def test_pick_for_a_completed_job_returns_the_same_object() -> None:
    completed = job_in(S.COMPLETED)
    assert reduce_job(completed, envelope(pick(2), 50)) is completed


def test_pick_that_skips_an_attempt_number_is_ignored() -> None:
    # Attempts are consecutive: a pick quoting attempt 3 after attempt 1 is not the next lease.
    state = fold([enqueue(), pick(1), JobFailed(job_id=JOB, attempt=1, error="e", retry_at=at(3)),
                  JobDue(job_id=JOB)])
    assert state.status == S.PENDING
    assert reduce_job(state, envelope(pick(3), 50)) is state


def test_event_for_a_job_never_enqueued_is_ignored() -> None:
    assert reduce_job(None, envelope(pick(1), 0)) is None


def second_attempt_running() -> JobState:
    """Attempt 1's lease expired and attempt 2 was picked: attempt 1 is superseded."""
    state = fold([
        enqueue(), pick(1), JobLeaseExpired(job_id=JOB, attempt=1, retry_at=at(3)),
        JobDue(job_id=JOB), pick(2),
    ])
    assert (state.status, state.attempt) == (S.IN_PROGRESS, 2)
    return state


@pytest.mark.parametrize(
    "late",
    [
        JobHeartbeat(job_id=JOB, attempt=1, lease_expires_at=at(9999), progress=Progress(5, 10)),
        JobSucceeded(job_id=JOB, attempt=1),
        JobFailed(job_id=JOB, attempt=1, error="late"),
        JobLeaseExpired(job_id=JOB, attempt=1),
        JobCancelled(job_id=JOB, attempt=1),
    ],
    ids=lambda e: type(e).__name__,
)
def test_event_quoting_a_superseded_attempt_changes_nothing(late: Event) -> None:
    # The attempt number is the lease's fencing token: a worker that lost its lease may
    # still report, and must not touch the attempt that replaced it.
    state = second_attempt_running()
    assert reduce_job(state, envelope(late, 50)) is state


def test_event_quoting_the_current_attempt_after_a_retry_applies() -> None:
    state = second_attempt_running()
    after = reduce_job(state, envelope(JobSucceeded(job_id=JOB, attempt=2), 50))
    assert after is not None and after.status == S.COMPLETED


def test_duplicate_enqueue_changes_nothing() -> None:
    # An idempotency-key retry appends JobEnqueued again; the first one wins, even if the
    # duplicate differs.
    state = job_in(S.IN_PROGRESS)
    duplicate = JobEnqueued(job_id=JOB, task_type="other", priority=255, run_at=at(9999))
    assert reduce_job(state, envelope(duplicate, 50)) is state


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (JobFailed(job_id=JOB, attempt=1, error="e", retry_at=at(60)), S.SCHEDULED),
        (JobFailed(job_id=JOB, attempt=1, error="e", retry_at=None), S.DEAD_LETTER),
        (JobFailed(job_id=JOB, attempt=1, error="e", permanent=True), S.FAILED),
    ],
    ids=["retry_at", "retries_used_up", "permanent"],
)
def test_job_failed_moves_by_retry_at_and_permanent(failure: JobFailed, status: JobStatus) -> None:
    after = fold([failure], job_in(S.IN_PROGRESS), start=10)
    assert after.status == status
    assert (after.error, after.retry_count, after.run_status) == ("e", 1, RunStatus.FAILED)
    assert after.lease_expires_at is None
    if status == S.SCHEDULED:
        assert after.run_at == int(at(60).timestamp() * 1000) and after.finished_at is None
    else:
        assert after.finished_at == int(at(10).timestamp() * 1000)


def test_lease_expiry_without_retry_dead_letters_with_a_lease_error() -> None:
    after = fold([JobLeaseExpired(job_id=JOB, attempt=1)], job_in(S.IN_PROGRESS), start=10)
    assert (after.status, after.error) == (S.DEAD_LETTER, LEASE_EXPIRED_ERROR)


def test_requeue_resets_retry_count_and_goes_to_pending() -> None:
    state = fold([
        enqueue(), pick(1), JobFailed(job_id=JOB, attempt=1, error="e1", retry_at=at(3)),
        JobDue(job_id=JOB), pick(2), JobFailed(job_id=JOB, attempt=2, error="e2"),
    ])
    assert (state.status, state.retry_count) == (S.DEAD_LETTER, 2)

    requeued = fold([JobRequeued(job_id=JOB, task_type="resize", attempt=2)], state, start=10)
    assert requeued.status == S.PENDING
    assert requeued.retry_count == 0
    assert (requeued.error, requeued.finished_at, requeued.run_at) == (None, None, None)
    # The attempt count goes on: the next lease is attempt 3, so late reports of attempt 2
    # stay fenced out.
    assert requeued.attempt == 2
    assert fold([pick(3)], requeued, start=11).attempt == 3


@pytest.mark.parametrize("status", sorted(WAITING))
def test_cancel_without_attempt_cancels_a_waiting_job(status: JobStatus) -> None:
    after = fold([JobCancelled(job_id=JOB)], job_in(status), start=10)
    assert after.status == S.CANCELLED


@pytest.mark.parametrize("status", [S.IN_PROGRESS, *sorted(TERMINAL)])
def test_cancel_without_attempt_leaves_other_states_alone(status: JobStatus) -> None:
    # A running job is cancelled only by naming its attempt (the worker stopped it).
    state = job_in(status)
    assert reduce_job(state, envelope(JobCancelled(job_id=JOB), 50)) is state


def test_cancel_naming_the_running_attempt_ends_the_run() -> None:
    after = fold([JobCancelled(job_id=JOB, attempt=1)], job_in(S.IN_PROGRESS), start=10)
    assert (after.status, after.run_status) == (S.CANCELLED, RunStatus.CANCELLED)
    assert after.lease_expires_at is None


@pytest.mark.parametrize("status", [S.SCHEDULED, S.PENDING, S.IN_PROGRESS])
def test_cancel_request_flags_an_unfinished_job(status: JobStatus) -> None:
    state = job_in(status)
    after = fold([JobCancelRequested(job_id=JOB, reason="user")], state, start=10)
    assert after.cancel_requested and after.status == status
    # A second request is a duplicate: same object.
    assert reduce_job(after, envelope(JobCancelRequested(job_id=JOB), 11)) is after


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_cancel_request_ignores_a_finished_job(status: JobStatus) -> None:
    state = job_in(status)
    assert reduce_job(state, envelope(JobCancelRequested(job_id=JOB), 50)) is state


def test_heartbeat_renews_the_lease_and_reports_progress() -> None:
    state = job_in(S.IN_PROGRESS)
    beat = JobHeartbeat(job_id=JOB, attempt=1, lease_expires_at=at(2000),
                        progress=Progress(processed=3, total=10, failed=1))
    after = fold([beat], state, start=10)
    assert after.lease_expires_at == int(at(2000).timestamp() * 1000)
    assert (after.processed, after.total, after.failed) == (3, 10, 1)
    # Heartbeats are not changes a user sees.
    assert after.updated_at == state.updated_at


def test_success_ends_the_lease() -> None:
    completed = job_in(S.COMPLETED)
    assert completed.lease_expires_at is None
    assert completed.run_status == RunStatus.COMPLETED


def test_enqueue_with_future_run_at_is_scheduled_and_past_run_at_is_pending() -> None:
    assert fold([enqueue(run_at_seconds=10)]).status == S.SCHEDULED
    later = reduce_job(None, envelope(enqueue(run_at_seconds=10), 20))
    assert later is not None and later.status == S.PENDING

