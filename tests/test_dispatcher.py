"""The partition owner (services/runtime/dispatcher.py) through a real EmbeddedNode: picks in
priority order, delays, retries with backoff, timeouts, lease expiry, cancel, requeue,
pause, idempotency and restarts. Time is a ManualClock the tests advance."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import defaultdict
from datetime import timedelta
from typing import Any

import msgspec
import pytest

from jobledger.projections.jobs import LEASE_EXPIRED_ERROR, JobState, reduce_job
from jobledger.schemas import (
    JOBS,
    LOGS,
    SCHEDULES,
    WORKERS,
    Actor,
    ActorKind,
    JobCancelRequested,
    JobPicked,
    JobStatus,
    JobSucceeded,
    RunStatus,
    decode,
)
from jobledger.schemas.codec import decode_batch
from jobledger.schemas.common import to_ms
from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext
from jobledger.services.handlers.demo import demo
from jobledger.services.log.protocol import LogError
from jobledger.services.log.sqlite import SQLiteLogBackend
from jobledger.services.node.embedded import EmbeddedNode
from jobledger.services.runtime.clock import ManualClock
from jobledger.services.runtime.dispatcher import Dispatcher, DispatcherConfig
from jobledger.services.write.commands import CancelOutcome, Conflict
from jobledger.services.write.producer import job_id_for_key, task_request
from tests.support.harness import (
    JobPredicate,
    NodeFactory,
    advance,
    clock_of,
    dispatcher_of,
    enqueue,
    history,
    job,
    runs,
    seeded_backoff,
    settle,
    wait_until,
)

S = JobStatus
R = RunStatus
NODE_TOPICS = {JOBS: 4, LOGS: 4, WORKERS: 1, SCHEDULES: 1}  # as NodeFactory's nodes have


def recording_app() -> tuple[App, list[Any], asyncio.Event]:
    """An App with "record" (appends its payload to the list) and "blocker" (waits for the
    event), so a test can hold the only worker slot and see what runs after."""
    app = App()
    ran: list[Any] = []
    release = asyncio.Event()

    @app.job("record")
    async def record(ctx: JobContext, payload: Any) -> Any:
        ran.append(payload)
        return payload

    @app.job("blocker")
    async def blocker(ctx: JobContext, payload: Any) -> None:
        await release.wait()

    return app, ran, release


def attempt_is(attempt: int, status: JobStatus) -> JobPredicate:
    return lambda s: s.attempt == attempt and s.status == status


async def until_due(node: EmbeddedNode, state: JobState, extra: float = 0.01) -> None:
    """Advance the clock just past the job's run_at."""
    assert state.run_at is not None
    await advance(node, (state.run_at - to_ms(clock_of(node).now())) / 1000 + extra)


# -- retries -------------------------------------------------------------------------------


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


# -- pick order ------------------------------------------------------------------------------


async def test_higher_priority_runs_first(make_node: NodeFactory) -> None:
    app, ran, release = recording_app()
    node = await make_node(app, concurrency=1)
    blocker = await enqueue(node, "blocker")
    await wait_until(node, blocker, S.IN_PROGRESS)

    ids = [await enqueue(node, "record", p, priority=p) for p in (10, 200, 128)]
    await settle(node)
    assert [(await job(node, i)).status for i in ids] == [S.PENDING] * 3
    release.set()

    for job_id in ids:
        await wait_until(node, job_id, S.COMPLETED)
    assert ran == [200, 128, 10]


@pytest.mark.parametrize(
    ("partitions", "apart"),
    [(1, 0.0), (4, 0.001)],
    ids=["one-partition-one-instant", "four-partitions-1ms-apart"],
)
async def test_equal_priorities_run_in_enqueue_order(
    make_node: NodeFactory, partitions: int, apart: float
) -> None:
    """Within a partition the log orders enqueues; across partitions only created_at can,
    and it has millisecond resolution (enqueues within one millisecond on different
    partitions have no order to keep), so there the enqueues are 1 ms apart."""
    app, ran, release = recording_app()
    node = await make_node(app, concurrency=1, partitions=partitions)
    blocker = await enqueue(node, "blocker")
    await wait_until(node, blocker, S.IN_PROGRESS)

    names = [f"job-{i}" for i in range(8)]  # with four partitions, several share each one
    ids = []
    for name in names:
        ids.append(await enqueue(node, "record", name, priority=50))
        if apart:
            await advance(node, apart)
    await settle(node)
    release.set()

    for job_id in ids:
        await wait_until(node, job_id, S.COMPLETED)
    assert ran == names


# -- delays ----------------------------------------------------------------------------------


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


# -- cancel ----------------------------------------------------------------------------------


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


# -- idempotency -----------------------------------------------------------------------------


async def test_enqueueing_twice_with_one_key_makes_one_job_that_runs_once(
    make_node: NodeFactory,
) -> None:
    app, ran, release = recording_app()
    node = await make_node(app, concurrency=1)
    blocker = await enqueue(node, "blocker")
    await wait_until(node, blocker, S.IN_PROGRESS)
    request = task_request("record", "once", idempotency_key="order-42")

    [first] = await node.commands.enqueue([request])
    [second] = await node.commands.enqueue([request])

    assert first.task_id == second.task_id == job_id_for_key("order-42")
    assert (first.created, second.created) == (True, False)
    release.set()
    await wait_until(node, first.task_id, S.COMPLETED)
    await settle(node)
    assert ran == ["once"]
    rows = await node.queries.db.execute_fetchall(
        "SELECT COUNT(*) FROM jobs WHERE idempotency_key = 'order-42'"
    )
    assert rows[0][0] == 1


async def test_a_repeated_key_after_the_job_finished_does_not_run_it_again(
    make_node: NodeFactory,
) -> None:
    app, ran, _ = recording_app()
    node = await make_node(app)
    request = task_request("record", "once", idempotency_key="invoice-7")
    [first] = await node.commands.enqueue([request])
    done = await wait_until(node, first.task_id, S.COMPLETED)

    [again] = await node.commands.enqueue([request])
    await settle(node)

    assert (again.task_id, again.created, again.status) == (first.task_id, False, S.COMPLETED)
    assert ran == ["once"]
    assert await job(node, first.task_id) == done
    assert [(a, s) for a, s, _ in await runs(node, first.task_id)] == [(1, R.COMPLETED)]


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


async def test_a_repeated_key_after_a_restart_does_not_run_the_job_again(
    make_node: NodeFactory,
) -> None:
    app, ran, _ = recording_app()
    clock = ManualClock()
    first = await make_node(app, clock=clock)
    request = task_request("record", "once", idempotency_key="invoice-8")
    [enqueued] = await first.commands.enqueue([request])
    await wait_until(first, enqueued.task_id, S.COMPLETED)
    await make_node.stop(first)

    second = await make_node(app, clock=clock)
    [again] = await second.commands.enqueue([request])
    await settle(second)

    assert (again.task_id, again.created) == (enqueued.task_id, False)
    assert ran == ["once"]


# -- timeouts and leases ---------------------------------------------------------------------


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


# -- requeue ---------------------------------------------------------------------------------


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


# -- pause -----------------------------------------------------------------------------------


async def test_a_paused_queue_is_not_picked_until_resumed(make_node: NodeFactory) -> None:
    app, ran, _ = recording_app()
    node = await make_node(app)
    await node.commands.set_paused("reports", True)

    held = await enqueue(node, "record", "report", queue="reports")
    free = await enqueue(node, "record", "email")
    await wait_until(node, free, S.COMPLETED)
    await advance(node, 30)
    assert ran == ["email"]
    assert (await job(node, held)).status == S.PENDING

    await node.commands.set_paused("reports", False)

    await wait_until(node, held, S.COMPLETED)
    assert ran == ["email", "report"]


# -- restarts --------------------------------------------------------------------------------


async def test_a_restarted_node_retries_the_job_that_was_running(make_node: NodeFactory) -> None:
    app = App()
    attempts: list[int] = []

    @app.job("hang_first_attempt")
    async def hang_first_attempt(ctx: JobContext, payload: Any) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            await asyncio.Event().wait()  # until its node stops
        return ctx.attempt

    app_record, ran, _ = recording_app()
    app.include(app_record)
    clock = ManualClock()
    first = await make_node(app, clock=clock)
    running = await enqueue(first, "hang_first_attempt")
    delayed = await enqueue(first, "record", "after restart", delay_seconds=5)
    await wait_until(first, running, S.IN_PROGRESS)
    await make_node.stop(first)

    second = await make_node(app, clock=clock)
    assert (await job(second, running)).status == S.IN_PROGRESS
    await advance(second, 31)  # past the lease nobody renews any more

    expired = await wait_until(second, running, attempt_is(1, S.SCHEDULED))
    assert expired.error == LEASE_EXPIRED_ERROR
    await until_due(second, expired)
    done = await wait_until(second, running, S.COMPLETED)
    assert done.attempt == 2 and attempts == [1, 2]
    assert (await wait_until(second, delayed, S.COMPLETED)).attempt == 1
    assert ran == ["after restart"]


async def test_a_stopping_node_picks_no_new_job(make_node: NodeFactory) -> None:
    app, _, release = recording_app()
    proceed = asyncio.Event()

    @app.job("slow")
    async def slow(ctx: JobContext, payload: Any) -> int:
        await proceed.wait()
        return ctx.attempt

    clock = ManualClock()
    first = await make_node(app, clock=clock, concurrency=1, shutdown_grace_seconds=5)
    blocker = await enqueue(first, "blocker")
    await wait_until(first, blocker, S.IN_PROGRESS)
    queued = await enqueue(first, "slow")
    await settle(first)

    stopping = asyncio.create_task(make_node.stop(first))
    await asyncio.sleep(0)  # one yield: stop() has begun when the blocker finishes
    release.set()  # the blocker ends inside the grace period and frees its slot
    await stopping

    # Had the stopping node picked the queued job, its attempt 1 would hang on a lease
    # nobody renews, and count as a failure against the job's retries.
    second = await make_node(app, clock=clock)
    picked = await wait_until(second, queued, S.IN_PROGRESS)
    assert (picked.attempt, picked.worker_id) == (1, second.config.dispatcher.worker_id)
    proceed.set()
    done = await wait_until(second, queued, S.COMPLETED)
    assert (done.attempt, done.retry_count) == (1, 0)
    assert (await job(second, blocker)).status == S.COMPLETED


async def test_a_pick_whose_append_fails_stops_its_handler_and_the_job_runs_again(
    make_node: NodeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Handlers start as their pick is appended, before it is durable (the dispatcher's
    _fill). A pick the log refuses never existed: its handler is stopped, whatever end it
    reported changes nothing, and the job is picked again under the same attempt."""
    app = App()
    started: list[int] = []
    stopped: list[int] = []
    proceed = asyncio.Event()

    @app.job("once_proceeded")
    async def once_proceeded(ctx: JobContext, payload: Any) -> int:
        started.append(ctx.attempt)
        try:
            await proceed.wait()
        except asyncio.CancelledError:
            stopped.append(ctx.attempt)
            raise
        return len(started)

    node = await make_node(app)
    log = node.backend.topic(JOBS)
    append = log.append
    refused: list[str] = []

    async def refuse_the_first_pick(entries: Any, sync: bool = True) -> Any:
        if not refused and any(isinstance(decode(e.value).event, JobPicked) for e in entries):
            refused.append("JobPicked")
            await asyncio.sleep(0)  # the handler has started meanwhile
            raise LogError("disk full")
        return await append(entries, sync)

    monkeypatch.setattr(log, "append", refuse_the_first_pick)
    job_id = await enqueue(node, "once_proceeded")
    await settle(node)
    proceed.set()
    done = await wait_until(node, job_id, S.COMPLETED)

    assert refused == ["JobPicked"] and started == [1, 1] and stopped == [1]
    assert (done.attempt, done.retry_count) == (1, 0)
    assert msgspec.json.decode(done.result) == 2  # the second run's
    types = [type(e.event).__name__ for e in await history(node, job_id)]
    assert types == ["JobEnqueued", "JobPicked", "JobSucceeded"]


async def test_only_the_dispatchers_own_decisions_are_appended_unsynced(
    make_node: NodeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client's write is acknowledged once fsynced; the dispatcher's decisions are
    appended with sync=False (services/log/protocol.py). A decision an OS crash loses is taken
    again: a lost JobCancelled, for one, from the synced JobCancelRequested on restart."""
    node = await make_node(demo)
    log = node.backend.topic(JOBS)
    append = log.append
    synced: dict[str, set[bool]] = defaultdict(set)

    async def record(entries: Any, sync: bool = True) -> Any:
        for entry in entries:
            synced[type(decode(entry.value).event).__name__].add(sync)
        return await append(entries, sync)

    monkeypatch.setattr(log, "append", record)
    done = await enqueue(node, "echo", {"n": 1})
    await wait_until(node, done, S.COMPLETED)
    cancelled = await enqueue(node, "echo", delay_seconds=60)
    await wait_until(node, cancelled, S.SCHEDULED)
    await node.commands.cancel(cancelled)
    await settle(node)

    assert synced == {"JobEnqueued": {True}, "JobCancelRequested": {True},
                      "JobPicked": {False}, "JobSucceeded": {False}, "JobCancelled": {False}}


async def test_picks_run_no_further_ahead_of_the_log_than_max_unread_picks(
    make_node: NodeFactory,
) -> None:
    """Handlers start before their pick is durable, so it is the bound on picks not yet read
    back that stops a dispatcher from running away from a log that has stalled."""
    app, ran, release = recording_app()
    node = await make_node(app, concurrency=4, max_unread_picks=2)
    dispatcher = dispatcher_of(node)
    blockers = [await enqueue(node, "blocker") for _ in range(4)]
    for blocker in blockers:
        await wait_until(node, blocker, S.IN_PROGRESS)
    queued = [await enqueue(node, "record", n) for n in range(4)]
    await settle(node)

    stall = sqlite3.connect(node.config.db)  # holds the log's write lock: appends wait
    stall.execute("BEGIN IMMEDIATE")
    try:
        release.set()  # four slots free up; the outcomes wait on the log, as do new picks
        for _ in range(200):  # turns of the loop, not time: nothing here waits on a clock
            await asyncio.sleep(0)
        assert len(ran) == 2 and len(dispatcher._in_flight) == 2
        assert dispatcher.executor.free == 4
    finally:
        stall.rollback()
        stall.close()
    for job_id in queued:
        await wait_until(node, job_id, S.COMPLETED)
    assert sorted(ran) == [0, 1, 2, 3]


async def test_a_dispatcher_folds_the_log_past_a_stale_snapshot_before_it_picks(
    make_node: NodeFactory,
) -> None:
    """A restarted node starts from the read model, which a kill may have left behind the
    log. Its dispatcher must fold the log to the end before deciding: from the snapshot
    alone, a job the log shows finished would look pending and run a second time."""
    app, ran, _ = recording_app()
    first = await make_node(app)
    job_id = await enqueue(first, "record", "once")
    await wait_until(first, job_id, S.COMPLETED)
    await make_node.stop(first)

    backend = await SQLiteLogBackend.open(make_node.db, NODE_TOPICS)
    log = backend.topic(JOBS)
    partition = log.partition_for(job_id)
    records = await log.read(partition, 0, limit=100)
    [enqueued], _ = decode_batch([r for r in records if r.key == job_id][:1])
    stale = reduce_job(None, enqueued)  # pending, as a read model that missed the rest
    assert stale is not None and stale.status == S.PENDING
    dispatcher = Dispatcher(backend, app, ManualClock(), DispatcherConfig(shutdown_grace_seconds=0))
    dispatcher.load([stale], {}, {partition: enqueued.offset + 1})
    try:
        await dispatcher.start()
        for _ in range(50):  # turns of the loop: a pick would be appended by now
            await asyncio.sleep(0)
        await dispatcher.publisher.drain()
        assert ran == ["once"] and not dispatcher.executor.running
        picks = [r for r in await log.read(partition, 0, limit=100)
                 if r.key == job_id and isinstance(decode(r.value).event, JobPicked)]
        assert len(picks) == 1
    finally:
        await dispatcher.stop()
        await backend.close()
