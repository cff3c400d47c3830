"""Every status in jobledger, one enum each, and the one table of a job's transitions.

Each member's comment says who moves a thing out of that state, and by which event. The
jobs reducer (projections/jobs.py) is the only code that moves a job between states, and
tests derive the allowed moves from TRANSITIONS. docs/lifecycle.md shows TRANSITIONS as a
diagram and a table, written by tools/lifecycle_doc.py (a test checks that they are current).
"""

from __future__ import annotations

import enum
from typing import Final

from .jobs import (
    JobCancelled,
    JobDue,
    JobEnqueued,
    JobFailed,
    JobLeaseExpired,
    JobPicked,
    JobRequeued,
    JobSucceeded,
)


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

# The events that move a job between states, in the order the diagram draws them.
MovingEvent = (
    type[JobEnqueued] | type[JobDue] | type[JobPicked] | type[JobSucceeded] | type[JobFailed]
    | type[JobLeaseExpired] | type[JobCancelled] | type[JobRequeued]
)
NEW: Final = None  # the table's name for a job before its JobEnqueued

S = JobStatus
# (from, event class) -> possible destinations. Any pair not here leaves the job as it is.
TRANSITIONS: dict[tuple[JobStatus | None, MovingEvent], frozenset[JobStatus]] = {
    (NEW, JobEnqueued): frozenset({S.SCHEDULED, S.PENDING}),
    (S.SCHEDULED, JobDue): frozenset({S.PENDING}),
    (S.SCHEDULED, JobCancelled): frozenset({S.CANCELLED}),
    (S.PENDING, JobPicked): frozenset({S.IN_PROGRESS}),
    (S.PENDING, JobCancelled): frozenset({S.CANCELLED}),
    (S.IN_PROGRESS, JobSucceeded): frozenset({S.COMPLETED}),
    (S.IN_PROGRESS, JobFailed): frozenset({S.SCHEDULED, S.FAILED, S.DEAD_LETTER}),
    (S.IN_PROGRESS, JobLeaseExpired): frozenset({S.SCHEDULED, S.DEAD_LETTER}),
    (S.IN_PROGRESS, JobCancelled): frozenset({S.CANCELLED}),
    (S.COMPLETED, JobRequeued): frozenset({S.PENDING}),
    (S.FAILED, JobRequeued): frozenset({S.PENDING}),
    (S.DEAD_LETTER, JobRequeued): frozenset({S.PENDING}),
    (S.CANCELLED, JobRequeued): frozenset({S.PENDING}),
}

# Where an event has several destinations: which one, by what the event carries.
WHICH: dict[tuple[MovingEvent, JobStatus], str] = {
    (JobEnqueued, S.SCHEDULED): "run_at after the envelope's time",
    (JobEnqueued, S.PENDING): "run_at null or past",
    (JobFailed, S.SCHEDULED): "retry_at set",
    (JobFailed, S.FAILED): "permanent",
    (JobFailed, S.DEAD_LETTER): "retries used up",
    (JobLeaseExpired, S.SCHEDULED): "retry_at set",
    (JobLeaseExpired, S.DEAD_LETTER): "retries used up",
}

# Moves that apply only to some events of their type; the others change nothing.
ONLY: dict[tuple[JobStatus | None, MovingEvent], str] = {
    (S.SCHEDULED, JobCancelled): "attempt null",
    (S.PENDING, JobPicked): "attempt = latest attempt + 1",
    (S.PENDING, JobCancelled): "attempt null",
    (S.IN_PROGRESS, JobCancelled): "attempt = the running attempt",
}


class RunStatus(enum.StrEnum):
    """The status of a run: one attempt of a task."""

    # The attempt holds a lease. The worker slot ends it with JobSucceeded, JobFailed or
    # JobCancelled; the partition owner with JobLeaseExpired, a timeout JobFailed, or
    # JobCancelled when the attempt does not run in its process.
    RUNNING = "RUNNING"
    # Terminal: nothing moves a run on once it has ended. A retry or a requeue is a new run.
    COMPLETED = "COMPLETED"
    # Terminal: the handler raised, ran past its timeout, or lost its lease.
    FAILED = "FAILED"
    # Terminal: the running attempt was cancelled.
    CANCELLED = "CANCELLED"


class WorkerStatus(enum.StrEnum):
    """The status of a worker process."""

    # Started and heartbeating. The worker moves it to STOPPED with WorkerStopped when it
    # shuts down; a watcher moves it to LOST with WorkerLost (the embedded node at start
    # for the workers of the process before it, in Kafka mode the liveness checker when
    # the worker has left the consumer group for long enough).
    ALIVE = "alive"
    # Shut down cleanly. A WorkerStarted with the same id makes it alive again.
    STOPPED = "stopped"
    # Gone without a word. WorkerStopped (it did stop after all) or WorkerStarted move it on.
    LOST = "lost"


class ScheduleStatus(enum.StrEnum):
    """The state of a schedule."""

    # Its scheduler fires it by its trigger. A user moves it to PAUSED with SchedulePaused, or
    # to REMOVED with ScheduleRemoved.
    ACTIVE = "active"
    # No timed fires. A user moves it to ACTIVE with ScheduleResumed, or to REMOVED.
    PAUSED = "paused"
    # Gone from the API. A new ScheduleDefined with the same id starts it over, ACTIVE: a
    # user's, or a node's at start for a schedule its handlers declare.
    REMOVED = "removed"
