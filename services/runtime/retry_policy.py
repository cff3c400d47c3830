"""When a failed attempt may run again, and how long an attempt may run.

Both are settled the same way: the job's own value (on its JobEnqueued), else its
handler's default (`@app.job(max_retries=..., timeout=...)`), else jobledger's
(DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_SECONDS). A timeout ends an attempt as a failure,
which this policy then retries like any other. The partition owner's clock alone judges
the time (docs/architecture.md, requirement 9).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from jobledger.projections.jobs import JobState
from jobledger.schemas.common import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_SECONDS
from jobledger.services.handlers.app import Handler
from jobledger.services.runtime.backoff import Backoff
from jobledger.services.runtime.clock import Clock


class RetryPolicy:
    def __init__(self, handlers: Mapping[str, Handler], backoff: Backoff, clock: Clock):
        self.handlers = handlers  # the App's, by task type: handlers registered later count
        self.backoff = backoff
        self.clock = clock

    def retry_at(self, job: JobState) -> datetime | None:
        """When the next attempt of a job whose latest attempt failed may start (the
        backoff from now), or None when its retries are used up."""
        handler = self.handlers.get(job.task_type)
        max_retries = job.max_retries
        if max_retries is None and handler is not None:
            max_retries = handler.max_retries
        if max_retries is None:
            max_retries = DEFAULT_MAX_RETRIES
        retry = job.retry_count + 1
        if retry > max_retries:
            return None
        return self.clock.now() + timedelta(seconds=self.backoff.delay(retry))

    def timeout_seconds(self, job: JobState) -> float:
        """How long an attempt of the job may run, from its start."""
        if job.timeout_seconds is not None:
            return job.timeout_seconds
        handler = self.handlers.get(job.task_type)
        if handler is not None and handler.timeout is not None:
            return handler.timeout
        return DEFAULT_TIMEOUT_SECONDS
