"""The retry policy (services/runtime/retry_policy.py): a job's own max_retries and
timeout_seconds, else its handler's, else the defaults (3 retries, 300 s); the next attempt
waits the backoff from the owner's clock, a ManualClock here."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest

from jobledger.schemas.common import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_SECONDS
from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext
from jobledger.services.runtime.backoff import Backoff
from jobledger.services.runtime.clock import ManualClock
from jobledger.services.runtime.retry_policy import RetryPolicy
from tests.support.builders import job_state


def policy(clock: ManualClock | None = None, seed: int = 1) -> RetryPolicy:
    """Over an App whose "tuned" handler says max_retries=1, timeout=20 and whose "plain"
    handler says neither."""
    app = App()

    @app.job("tuned", max_retries=1, timeout=20)
    async def tuned(ctx: JobContext, payload: Any) -> None: ...

    @app.job("plain")
    async def plain(ctx: JobContext, payload: Any) -> None: ...

    return RetryPolicy(app.handlers, Backoff(rng=random.Random(seed)), clock or ManualClock())


@pytest.mark.parametrize(("task_type", "max_retries", "allowed"), [
    ("tuned", 5, 5),  # the job's own value first
    ("tuned", None, 1),  # then its handler's
    ("plain", None, DEFAULT_MAX_RETRIES),  # then the default
    ("unknown", None, DEFAULT_MAX_RETRIES),  # no handler at all
    ("plain", 0, 0),
])
def test_retries_until_the_allowed_number_is_used_up(
    task_type: str, max_retries: int | None, allowed: int,
) -> None:
    retries = policy()
    retry_ats = [retries.retry_at(job_state(task_type=task_type, max_retries=max_retries,
                                            retry_count=failed))
                 for failed in range(allowed + 2)]
    # retry_count is the failed attempts before this one: after the last allowed retry
    # fails, there is none left.
    assert [at is not None for at in retry_ats] == [True] * allowed + [False, False]


def test_the_next_attempt_waits_the_backoff_from_the_clock_now() -> None:
    clock = ManualClock()
    clock.advance(1234.5)
    retries = policy(clock, seed=99)
    predicted = Backoff(rng=random.Random(99))

    for failed in range(3):
        at = retries.retry_at(job_state(max_retries=3, retry_count=failed))
        assert at == clock.now() + timedelta(seconds=predicted.delay(failed + 1))


def test_no_backoff_is_drawn_for_a_job_whose_retries_are_used_up() -> None:
    """The backoff's random stream is only consumed by real retries (a seeded backoff in
    tests predicts the delays of the retries that happen)."""
    retries, predicted = policy(seed=5), Backoff(rng=random.Random(5))
    assert retries.retry_at(job_state(max_retries=0)) is None
    first = retries.retry_at(job_state(max_retries=1))
    assert first == retries.clock.now() + timedelta(seconds=predicted.delay(1))


@pytest.mark.parametrize(("task_type", "timeout_seconds", "expected"), [
    ("tuned", 7.5, 7.5),
    ("tuned", None, 20),
    ("plain", None, DEFAULT_TIMEOUT_SECONDS),
    ("unknown", None, DEFAULT_TIMEOUT_SECONDS),
])
def test_an_attempts_timeout_is_the_jobs_else_its_handlers_else_the_default(
    task_type: str, timeout_seconds: float | None, expected: float,
) -> None:
    job = job_state(task_type=task_type, timeout_seconds=timeout_seconds)
    assert policy().timeout_seconds(job) == expected
