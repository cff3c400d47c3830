"""The job lifecycle: one enum of states and the one table of transitions between them.

See docs/lifecycle.md for the diagram. The jobs reducer (projections/jobs.py) is the only
code that moves a job between states, and tests derive the allowed moves from TRANSITIONS.
"""

from __future__ import annotations

import enum


class JobStatus(enum.StrEnum):
    # run_at is in the future (a delayed job, or a retry waiting out its backoff).
    # The partition owner moves it to PENDING with JobDue when its clock reaches run_at.
    SCHEDULED = "scheduled"
    # Ready to run. The partition owner moves it to IN_PROGRESS with JobPicked.
    PENDING = "pending"
    # Picked under a lease. The worker moves it on with JobSucceeded / JobFailed /
    # JobCancelled; the owner with JobLeaseExpired or a timeout JobFailed.
    IN_PROGRESS = "in_progress"
    # Terminal. JobRequeued starts a new attempt.
    COMPLETED = "completed"
    # Terminal: the handler raised a permanent error (no retries). JobRequeued restarts it.
    FAILED = "failed"
    # Terminal: every allowed attempt failed. JobRequeued restarts it.
    DEAD_LETTER = "dead_letter"
    # Terminal: cancelled while scheduled, pending or running. JobRequeued restarts it.
    CANCELLED = "cancelled"


TERMINAL = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.DEAD_LETTER, JobStatus.CANCELLED}
)
WAITING = frozenset({JobStatus.SCHEDULED, JobStatus.PENDING})

S = JobStatus
# (from, event type) -> possible destinations. "new" is the state before JobEnqueued.
TRANSITIONS: dict[tuple[str, str], frozenset[JobStatus]] = {
    ("new", "JobEnqueued"): frozenset({S.SCHEDULED, S.PENDING}),
    (S.SCHEDULED, "JobDue"): frozenset({S.PENDING}),
    (S.SCHEDULED, "JobCancelled"): frozenset({S.CANCELLED}),
    (S.PENDING, "JobPicked"): frozenset({S.IN_PROGRESS}),
    (S.PENDING, "JobCancelled"): frozenset({S.CANCELLED}),
    (S.IN_PROGRESS, "JobSucceeded"): frozenset({S.COMPLETED}),
    (S.IN_PROGRESS, "JobFailed"): frozenset({S.SCHEDULED, S.FAILED, S.DEAD_LETTER}),
    (S.IN_PROGRESS, "JobLeaseExpired"): frozenset({S.SCHEDULED, S.DEAD_LETTER}),
    (S.IN_PROGRESS, "JobCancelled"): frozenset({S.CANCELLED}),
    (S.COMPLETED, "JobRequeued"): frozenset({S.PENDING}),
    (S.FAILED, "JobRequeued"): frozenset({S.PENDING}),
    (S.DEAD_LETTER, "JobRequeued"): frozenset({S.PENDING}),
    (S.CANCELLED, "JobRequeued"): frozenset({S.PENDING}),
}


class RunStatus(enum.StrEnum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
