"""Requeueing finished jobs through a real EmbeddedNode: the next attempt runs with a fresh
retry budget; an unfinished job cannot be requeued."""

from __future__ import annotations

from typing import Any

import pytest

from jobledger.schemas import JobStatus, RunStatus
from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext
from jobledger.services.write.commands import Conflict
from tests.support.harness import (
    NodeFactory,
    attempt_is,
    enqueue,
    recording_app,
    runs,
    settle,
    wait_until,
)

S = JobStatus
R = RunStatus


async def test_requeue_of_a_completed_job_runs_the_next_attempt(make_node: NodeFactory) -> None:
    app, ran, _ = recording_app()
    node = await make_node(app)
    job_id = await enqueue(node, "record", "again")
    await wait_until(node, job_id, S.COMPLETED)

    assert await node.commands.requeue(job_id) == S.PENDING

    done = await wait_until(node, job_id, attempt_is(2, S.COMPLETED))
    assert ran == ["again", "again"] and done.retry_count == 0


async def test_requeue_of_a_dead_letter_job_gives_it_a_fresh_retry_budget(
    make_node: NodeFactory,
) -> None:
    app = App()
    attempts: list[int] = []

    @app.job("fails_once")
    async def fails_once(ctx: JobContext, payload: Any) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return ctx.attempt

    node = await make_node(app)
    job_id = await enqueue(node, "fails_once", max_retries=0)
    dead = await wait_until(node, job_id, S.DEAD_LETTER)
    assert dead.retry_count == 1

    await node.commands.requeue(job_id)

    done = await wait_until(node, job_id, S.COMPLETED)
    assert (done.attempt, done.retry_count, done.error) == (2, 0, None)
    assert attempts == [1, 2]
    await settle(node)
    assert await runs(node, job_id) == [
        (1, R.FAILED, "RuntimeError: first attempt fails"), (2, R.COMPLETED, None)
    ]


async def test_requeue_of_cancelled_jobs_runs_them(make_node: NodeFactory) -> None:
    app, ran, release = recording_app()
    node = await make_node(app)
    waiting = await enqueue(node, "record", "was scheduled", delay_seconds=30)
    running = await enqueue(node, "blocker")
    await wait_until(node, running, S.IN_PROGRESS)
    await node.commands.cancel(waiting)
    await node.commands.cancel(running)
    await wait_until(node, running, S.CANCELLED)

    release.set()
    await node.commands.requeue(waiting)
    await node.commands.requeue(running)

    assert (await wait_until(node, waiting, S.COMPLETED)).attempt == 1
    assert (await wait_until(node, running, S.COMPLETED)).attempt == 2
    assert ran == ["was scheduled"]


async def test_requeue_of_an_unfinished_job_raises_conflict(make_node: NodeFactory) -> None:
    app, _, release = recording_app()
    node = await make_node(app, concurrency=1)
    running = await enqueue(node, "blocker")
    await wait_until(node, running, S.IN_PROGRESS)
    pending = await enqueue(node, "record", 1)
    await settle(node)

    with pytest.raises(Conflict, match="pending"):
        await node.commands.requeue(pending)
    with pytest.raises(Conflict, match="in_progress"):
        await node.commands.requeue(running)

    release.set()
    await wait_until(node, pending, S.COMPLETED)
