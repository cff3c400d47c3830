"""Cancelling jobs through a real EmbeddedNode: at once while waiting, refused or delivered
while running, a conflict once finished, and still honoured when the request lands just
before a failed attempt's retry."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from jobledger.schemas import JobCancelRequested, JobStatus
from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext
from jobledger.services.write.commands import CancelOutcome, Conflict
from tests.support.harness import (
    NodeFactory,
    advance,
    enqueue,
    history,
    job,
    recording_app,
    runs,
    settle,
    wait_until,
)

S = JobStatus


async def test_cancelling_a_scheduled_job_is_immediate(make_node: NodeFactory) -> None:
    app, ran, _ = recording_app()
    node = await make_node(app)
    job_id = await enqueue(node, "record", "never", delay_seconds=30)
    await wait_until(node, job_id, S.SCHEDULED)

    assert await node.commands.cancel(job_id, running_ok=False) is CancelOutcome.CANCELLED

    cancelled = await job(node, job_id)
    assert cancelled.status == S.CANCELLED and cancelled.attempt == 0
    await advance(node, 60)
    assert ran == [] and await runs(node, job_id) == []


async def test_cancelling_a_pending_job_is_immediate(make_node: NodeFactory) -> None:
    app, ran, release = recording_app()
    node = await make_node(app, concurrency=1)
    blocker = await enqueue(node, "blocker")
    await wait_until(node, blocker, S.IN_PROGRESS)
    job_id = await enqueue(node, "record", "never")
    await settle(node)

    assert await node.commands.cancel(job_id, running_ok=False) is CancelOutcome.CANCELLED

    assert (await job(node, job_id)).status == S.CANCELLED
    release.set()
    await wait_until(node, blocker, S.COMPLETED)
    await settle(node)
    assert ran == [] and (await job(node, job_id)).status == S.CANCELLED


async def test_cancel_without_running_ok_refuses_a_running_job(make_node: NodeFactory) -> None:
    app, _, release = recording_app()
    node = await make_node(app)
    job_id = await enqueue(node, "blocker")
    await wait_until(node, job_id, S.IN_PROGRESS)

    with pytest.raises(Conflict, match="in progress"):
        await node.commands.cancel(job_id, running_ok=False)

    release.set()
    await wait_until(node, job_id, S.COMPLETED)


async def test_cancelling_a_finished_job_raises_conflict(make_node: NodeFactory) -> None:
    app, _, _ = recording_app()
    node = await make_node(app)
    job_id = await enqueue(node, "record", 1)
    await wait_until(node, job_id, S.COMPLETED)

    with pytest.raises(Conflict, match="already completed"):
        await node.commands.cancel(job_id)


async def test_a_cancel_request_that_lands_just_before_a_failure_still_cancels(
    make_node: NodeFactory,
) -> None:
    app = App()
    gate = asyncio.Event()
    attempts: list[int] = []

    @app.job("fails")
    async def fails(ctx: JobContext, payload: Any) -> None:
        attempts.append(ctx.attempt)
        await gate.wait()
        raise RuntimeError("failed")

    node = await make_node(app)
    job_id = await enqueue(node, "fails", max_retries=3)
    await wait_until(node, job_id, S.IN_PROGRESS)
    await settle(node)

    # Published in the same loop tick as the handler's failure, and queued first: the log
    # has the request, then the failed attempt with its retry.
    requested = node.publisher.publish(JobCancelRequested(job_id=job_id), job_id)
    gate.set()
    await requested
    await settle(node)
    order = [type(env.event).__name__ for env in await history(node, job_id)]
    assert order.index("JobCancelRequested") < order.index("JobFailed"), order

    cancelled = await wait_until(node, job_id, S.CANCELLED)
    assert cancelled.attempt == 1
    await advance(node, 60)
    assert attempts == [1]
