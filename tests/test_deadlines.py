"""Deadlines judged by the partition owner's clock, through a real EmbeddedNode (the
dispatcher's Timers and Heartbeats): a delayed job's run_at, an attempt's timeout, an
expired lease and the late result it fences out, heartbeats that keep a lease. Time is a
ManualClock the tests advance; the Timers' own unit tests are in test_timers.py."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import msgspec

from jobledger.projections.jobs import LEASE_EXPIRED_ERROR
from jobledger.schemas import Actor, ActorKind, JobStatus, JobSucceeded, RunStatus
from jobledger.schemas.common import to_ms
from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext
from jobledger.services.write.producer import task_request
from tests.support.harness import (
    NodeFactory,
    advance,
    attempt_is,
    clock_of,
    enqueue,
    history,
    job,
    recording_app,
    runs,
    settle,
    until_due,
    wait_until,
)

S = JobStatus
R = RunStatus


async def test_a_delayed_job_waits_for_its_run_at(make_node: NodeFactory) -> None:
    app, ran, _ = recording_app()
    node = await make_node(app)
    start = clock_of(node).now()
    [enqueued] = await node.commands.enqueue([task_request("record", "late", delay_seconds=60)])
    assert enqueued.status == S.SCHEDULED

    scheduled = await wait_until(node, enqueued.task_id, S.SCHEDULED)
    assert scheduled.run_at == to_ms(start + timedelta(seconds=60))

    await advance(node, 59)
    assert ran == []
    assert (await job(node, enqueued.task_id)).status == S.SCHEDULED

    await advance(node, 2)
    done = await wait_until(node, enqueued.task_id, S.COMPLETED)
    assert ran == ["late"] and done.attempt == 1


async def test_a_job_past_its_timeout_is_failed_and_retried(make_node: NodeFactory) -> None:
    app = App()
    cancelled: list[int] = []

    @app.job("hang")
    async def hang(ctx: JobContext, payload: Any) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(ctx.attempt)
            raise

    node = await make_node(app)
    job_id = await enqueue(node, "hang", timeout_seconds=5)
    await wait_until(node, job_id, S.IN_PROGRESS)

    await advance(node, 4.9)
    assert (await job(node, job_id)).status == S.IN_PROGRESS and cancelled == []

    await advance(node, 0.2)
    failed = await wait_until(node, job_id, attempt_is(1, S.SCHEDULED))
    assert failed.error is not None and "timeout" in failed.error
    assert failed.retry_count == 1 and cancelled == [1]

    await until_due(node, failed)
    await wait_until(node, job_id, attempt_is(2, S.IN_PROGRESS))
    await settle(node)
    assert await runs(node, job_id) == [(1, R.FAILED, failed.error), (2, R.RUNNING, None)]


async def test_an_expired_lease_fails_the_attempt_and_fences_out_its_late_result(
    make_node: NodeFactory,
) -> None:
    app = App()
    zombie_release, second_release = asyncio.Event(), asyncio.Event()
    zombie_done: list[str] = []

    @app.job("stuck")
    async def stuck(ctx: JobContext, payload: Any) -> str:
        if ctx.attempt == 1:
            # A worker that never learns it lost the lease: it ignores cancellation.
            while not zombie_release.is_set():
                try:
                    await zombie_release.wait()
                except asyncio.CancelledError:
                    pass
            zombie_done.append("attempt 1")
            return "late result of attempt 1"
        await second_release.wait()
        return f"attempt {ctx.attempt}"

    # No heartbeat comes before the lease runs out: as if the worker had died.
    node = await make_node(app, lease_seconds=10, heartbeat_seconds=60)
    job_id = await enqueue(node, "stuck")
    await wait_until(node, job_id, S.IN_PROGRESS)

    await advance(node, 9.5, step=0.5)
    assert (await job(node, job_id)).status == S.IN_PROGRESS
    await advance(node, 1, step=0.5)
    expired = await wait_until(node, job_id, attempt_is(1, S.SCHEDULED))
    assert expired.error == LEASE_EXPIRED_ERROR and expired.retry_count == 1

    await until_due(node, expired)
    second = await wait_until(node, job_id, attempt_is(2, S.IN_PROGRESS))

    # The superseded attempt finishes late: on this node (whose slot gave the job away)...
    zombie_release.set()
    await settle(node)
    assert zombie_done == ["attempt 1"]
    # ... and as a worker elsewhere would report it, straight into the log.
    late = JobSucceeded(job_id=job_id, attempt=1, result=msgspec.Raw(b'"late"'))
    await node.publisher.publish(late, job_id, actor=Actor(ActorKind.WORKER, "zombie"))
    await settle(node)

    assert late in [env.event for env in await history(node, job_id)]
    assert await job(node, job_id) == second, "a superseded attempt changed the job"

    second_release.set()
    done = await wait_until(node, job_id, S.COMPLETED)
    assert done.attempt == 2 and done.result is not None
    assert msgspec.json.decode(done.result) == "attempt 2"
    await settle(node)
    assert await runs(node, job_id) == [(1, R.FAILED, LEASE_EXPIRED_ERROR), (2, R.COMPLETED, None)]


async def test_heartbeats_keep_a_long_job_alive(make_node: NodeFactory) -> None:
    app, _, release = recording_app()
    node = await make_node(app, lease_seconds=30)
    job_id = await enqueue(node, "blocker")
    picked = await wait_until(node, job_id, S.IN_PROGRESS)

    await advance(node, 95)  # three leases long, renewed every 10 s

    alive = await job(node, job_id)
    assert (alive.status, alive.attempt) == (S.IN_PROGRESS, 1)
    assert alive.lease_expires_at is not None and picked.lease_expires_at is not None
    assert alive.lease_expires_at > picked.lease_expires_at + 60_000
    release.set()
    await wait_until(node, job_id, S.COMPLETED)
