"""Backoff between attempts (services/runtime/backoff.py): exponential from base_seconds,
capped at cap_seconds, plus up to `jitter` of random extra."""

from __future__ import annotations

import random

import pytest

from jobledger.services.runtime.backoff import Backoff


def test_without_jitter_each_retry_waits_twice_the_one_before() -> None:
    backoff = Backoff(base_seconds=1.5, jitter=0)
    assert [backoff.delay(retry) for retry in range(1, 6)] == [1.5, 3, 6, 12, 24]


def test_the_wait_is_capped() -> None:
    backoff = Backoff(base_seconds=1, cap_seconds=10, jitter=0)
    assert [backoff.delay(retry) for retry in (4, 5, 6)] == [8, 10, 10]


def test_a_huge_retry_count_is_capped_instead_of_overflowing() -> None:
    assert Backoff(jitter=0).delay(10_000) == 3600


@pytest.mark.parametrize("retry", [1, 3, 20])
def test_jitter_adds_up_to_its_share_and_never_takes_away(retry: int) -> None:
    exact = Backoff(jitter=0).delay(retry)
    backoff = Backoff(jitter=0.25, rng=random.Random(7))
    delays = [backoff.delay(retry) for _ in range(200)]
    assert all(exact <= d <= exact * 1.25 for d in delays)
    assert max(delays) - min(delays) > exact * 0.2  # it does spread them


def test_one_seed_gives_one_sequence_of_delays() -> None:
    first, second = Backoff(rng=random.Random(1234)), Backoff(rng=random.Random(1234))
    assert [first.delay(r) for r in range(1, 8)] == [second.delay(r) for r in range(1, 8)]
