"""Retries through a real EmbeddedNode (the dispatcher's RetryPolicy and Backoff): failed
attempts back off exponentially until the retries are used up, then go to dead_letter;
a handler's max_retries applies to jobs enqueued without one. Time is a ManualClock the
tests advance."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import timedelta
from typing import Any

import msgspec

from jobledger.schemas import JobStatus, RunStatus
from jobledger.schemas.common import to_ms
from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext
from jobledger.services.handlers.demo import demo
from tests.support.harness import (
    NodeFactory,
    advance,
    attempt_is,
    clock_of,
    enqueue,
    job,
    runs,
    seeded_backoff,
    settle,
    until_due,
    wait_until,
)

S = JobStatus
R = RunStatus


async def test_failed_attempts_back_off_exponentially_then_go_to_dead_letter(
    make_node: NodeFactory,
) -> None:
    app = App()
    gates: defaultdict[int, asyncio.Event] = defaultdict(asyncio.Event)

    @app.job("always_fails")
    async def always_fails(ctx: JobContext, payload: Any) -> None:
        await gates[ctx.attempt].wait()
        raise RuntimeError(f"boom {ctx.attempt}")

    node = await make_node(app)
    clock = clock_of(node)
    predicted = seeded_backoff()  # the same seed as the node's: the same delays
    max_retries = 3
    job_id = await enqueue(node, "always_fails", max_retries=max_retries)

    for attempt in range(1, max_retries + 1):
        await wait_until(node, job_id, attempt_is(attempt, S.IN_PROGRESS))
        gates[attempt].set()
        state = await wait_until(node, job_id, attempt_is(attempt, S.SCHEDULED))
        delay = predicted.delay(attempt)
        assert delay >= 2 ** (attempt - 1)
        assert state.run_at == to_ms(clock.now() + timedelta(seconds=delay))
        assert (state.retry_count, state.error) == (attempt, f"RuntimeError: boom {attempt}")

        await advance(node, delay - 0.01)
        assert await job(node, job_id) == state, "picked again before its run_at"
        await advance(node, 0.02)
        await wait_until(node, job_id, attempt_is(attempt + 1, S.IN_PROGRESS))

    gates[max_retries + 1].set()
    dead = await wait_until(node, job_id, S.DEAD_LETTER)
    assert dead.attempt == dead.retry_count == max_retries + 1
    assert dead.run_at is not None and dead.finished_at is not None
    await settle(node)
    assert await runs(node, job_id) == [
        (a, R.FAILED, f"RuntimeError: boom {a}") for a in range(1, max_retries + 2)
    ]
    await advance(node, 60)
    assert (await job(node, job_id)).attempt == max_retries + 1


async def test_flaky_demo_job_completes_on_attempt_after_its_failures(
    make_node: NodeFactory,
) -> None:
    node = await make_node(demo)
    fail_times = 2
    job_id = await enqueue(node, "flaky", {"fail_times": fail_times})

    for attempt in range(1, fail_times + 1):
        await until_due(node, await wait_until(node, job_id, attempt_is(attempt, S.SCHEDULED)))

    done = await wait_until(node, job_id, S.COMPLETED)
    assert done.result is not None
    assert msgspec.json.decode(done.result) == {"succeeded_on_attempt": fail_times + 1}
    assert (done.attempt, done.retry_count) == (fail_times + 1, fail_times)
    await settle(node)
    assert [(a, s) for a, s, _ in await runs(node, job_id)] == [
        (1, R.FAILED), (2, R.FAILED), (3, R.COMPLETED)
    ]


async def test_a_handlers_max_retries_applies_to_jobs_enqueued_without_one(
    make_node: NodeFactory,
) -> None:
    app = App()

    @app.job("no_retries", max_retries=0)
    async def no_retries(ctx: JobContext, payload: Any) -> None:
        raise RuntimeError("failed")

    node = await make_node(app)
    job_id = await enqueue(node, "no_retries")

    ended = await wait_until(node, job_id, lambda s: s.status in (S.SCHEDULED, S.DEAD_LETTER))
    assert ended.status == S.DEAD_LETTER
