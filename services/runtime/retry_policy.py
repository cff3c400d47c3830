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
from jobledger.services.handlers.app import Handler, limits_in_effect
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
        max_retries, _ = self._limits(job)
        retry = job.retry_count + 1
        if retry > max_retries:
            return None
        return self.clock.now() + timedelta(seconds=self.backoff.delay(retry))

    def timeout_seconds(self, job: JobState) -> float:
        """How long an attempt of the job may run, from its start."""
        return self._limits(job)[1]

    def _limits(self, job: JobState) -> tuple[int, float]:
        handler = self.handlers.get(job.task_type)
        return limits_in_effect(handler, job.max_retries, job.timeout_seconds)
