"""Events of the jobs topic: one job's whole life, plus queue pause/resume.

Tags are explicit and stable: renaming a class never orphans the log. `v` is the schema
version of each event; it is always written, so a record without it is read as the
current version (external producers may leave it out).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from .common import (
    Attempt,
    LogLevel,
    Name,
    NonNegativeInt,
    PositiveSeconds,
    Priority,
    Progress,
    json_null,
)


class JobEnqueued(msgspec.Struct, frozen=True, gc=False, tag="JobEnqueued"):
    """A producer asked for a job. A second JobEnqueued for an existing job_id is a
    duplicate: it stays in the history and changes nothing (that is how idempotency
    keys work, see docs/events.md)."""

    job_id: str
    task_type: Name
    queue: Name = "default"
    payload: msgspec.Raw = msgspec.field(default_factory=json_null)  # any JSON value
    priority: Priority = 128
    run_at: datetime | None = None  # None or a past time: ready at once
    timeout_seconds: PositiveSeconds | None = None  # None: the handler's default, else 300
    max_retries: NonNegativeInt | None = None  # None: the handler's default, else 3
    idempotency_key: str | None = None
    v: int = 1


class JobDue(msgspec.Struct, frozen=True, gc=False, tag="JobDue"):
    """The owner's clock reached the job's run_at: scheduled -> pending."""

    job_id: str
    v: int = 1


class JobPicked(msgspec.Struct, frozen=True, gc=False, tag="JobPicked"):
    """The owner gave the job to a worker slot: attempt starts under a lease."""

    job_id: str
    attempt: Attempt
    worker_id: str
    lease_expires_at: datetime
    v: int = 1


class JobHeartbeat(msgspec.Struct, frozen=True, gc=False, tag="JobHeartbeat"):
    """The running attempt is alive: the lease is renewed, progress reported."""

    job_id: str
    attempt: Attempt
    lease_expires_at: datetime
    progress: Progress | None = None
    v: int = 1


class JobLogged(msgspec.Struct, frozen=True, gc=False, tag="JobLogged"):
    """A log line of a run. Lives on the logs topic, keyed by job id."""

    job_id: str
    attempt: Attempt
    level: LogLevel
    message: str
    details: dict[str, Any] = {}
    v: int = 1


class JobSucceeded(msgspec.Struct, frozen=True, gc=False, tag="JobSucceeded"):
    job_id: str
    attempt: Attempt
    result: msgspec.Raw = msgspec.field(default_factory=json_null)
    progress: Progress | None = None  # the final count, when reported since the last heartbeat
    v: int = 1


class JobFailed(msgspec.Struct, frozen=True, gc=False, tag="JobFailed"):
    """An attempt failed (the handler raised, or ran past its timeout).

    retry_at set: back to scheduled until then. retry_at null: failed when permanent is
    true (the handler said the error is permanent), else dead_letter (retries used up).
    """

    job_id: str
    attempt: Attempt
    error: str
    stack: str | None = None
    retry_at: datetime | None = None
    permanent: bool = False
    progress: Progress | None = None  # the final count, when reported since the last heartbeat
    v: int = 1


class JobLeaseExpired(msgspec.Struct, frozen=True, gc=False, tag="JobLeaseExpired"):
    """The owner saw no heartbeat before the lease ran out: the attempt failed."""

    job_id: str
    attempt: Attempt
    retry_at: datetime | None = None
    v: int = 1


class JobCancelRequested(msgspec.Struct, frozen=True, gc=False, tag="JobCancelRequested"):
    """Someone asked to cancel; the owner answers with JobCancelled."""

    job_id: str
    reason: str | None = None
    v: int = 1


class JobCancelled(msgspec.Struct, frozen=True, gc=False, tag="JobCancelled"):
    """The job is cancelled. attempt is the run that was stopped, null if none ran."""

    job_id: str
    attempt: int | None = None
    v: int = 1


class JobRequeued(msgspec.Struct, frozen=True, gc=False, tag="JobRequeued"):
    """A terminal job starts over: pending again, with a fresh retry budget. It carries
    the job's definition, as JobEnqueued does, and its latest attempt."""

    # The definition travels again because a partition owner keeps only unfinished jobs in
    # memory and must be able to run this one from the event alone.

    job_id: str
    task_type: Name
    attempt: NonNegativeInt  # the latest attempt so far; the next pick is attempt + 1
    queue: Name = "default"
    payload: msgspec.Raw = msgspec.field(default_factory=json_null)
    priority: Priority = 128
    timeout_seconds: PositiveSeconds | None = None
    max_retries: NonNegativeInt | None = None
    v: int = 1


class QueuePaused(msgspec.Struct, frozen=True, gc=False, tag="QueuePaused"):
    """No job of this queue is picked until QueueResumed. Written to every partition."""

    queue: Name
    v: int = 1


class QueueResumed(msgspec.Struct, frozen=True, gc=False, tag="QueueResumed"):
    queue: Name
    v: int = 1


JobEvent = (
    JobEnqueued
    | JobDue
    | JobPicked
    | JobHeartbeat
    | JobLogged
    | JobSucceeded
    | JobFailed
    | JobLeaseExpired
    | JobCancelRequested
    | JobCancelled
    | JobRequeued
)
QueueEvent = QueuePaused | QueueResumed
# QueueEvent's members as a tuple, for the hot loops: isinstance() with a tuple, or `in`
# on type(event), is cheaper than isinstance() with the union.
QUEUE_EVENTS = (QueuePaused, QueueResumed)
