"""The dispatcher's own mechanics (services/runtime/dispatcher.py) through a real
EmbeddedNode: restarts and stops, picks that run ahead of the log (a refused pick, the
bound on unread picks, unsynced decisions), and folding past a stale snapshot before
deciding. What it decides is tested by behaviour: test_retries.py, test_pick_order.py,
test_deadlines.py, test_cancel.py, test_idempotency.py, test_requeue.py. Time is a
ManualClock the tests advance."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import defaultdict
from typing import Any

import msgspec
import pytest

from jobledger.projections.jobs import reduce_job
from jobledger.schemas import (
    JOBS,
    LOGS,
    SCHEDULES,
    SECURITY,
    WORKERS,
    JobFailed,
    JobLeaseExpired,
    JobPicked,
    JobStatus,
    decode,
)
from jobledger.schemas.codec import decode_batch
from jobledger.schemas.common import to_ms
from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext
from jobledger.services.handlers.demo import demo
from jobledger.services.log.protocol import LogError
from jobledger.services.log.sqlite import SQLiteLog, SQLiteLogBackend
from jobledger.services.runtime.clock import ManualClock
from jobledger.services.runtime.dispatcher import WORKER_STOPPED, Dispatcher, DispatcherConfig
from jobledger.services.runtime.faults import FIRST_RETRY_S
from tests.support.harness import (
    NodeFactory,
    advance,
    attempt_is,
    dispatcher_of,
    enqueue,
    history,
    job,
    recording_app,
    settle,
    wait_until,
)

S = JobStatus
NODE_TOPICS = {JOBS: 4, LOGS: 4, WORKERS: 1, SCHEDULES: 1, SECURITY: 1}  # as NodeFactory's


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

    # The stop handed the unfinished attempt back (fault-injection row R5): retried at
    # once, not after the lease nobody renews any more (before: 30 s of lease).
    second = await make_node(app, clock=clock)
    done = await wait_until(second, running, S.COMPLETED)  # the clock never moved
    ends = [e.event for e in await history(second, running)
            if isinstance(e.event, JobFailed | JobLeaseExpired)]
    assert len(ends) == 1 and isinstance(ends[0], JobFailed) and ends[0].attempt == 1
    assert ends[0].error.startswith(WORKER_STOPPED) and ends[0].retry_at is not None
    assert done.attempt == 2 and attempts == [1, 2]
    await advance(second, 5)
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
    assert started == [1]  # no picks for a while after a refused one (faults.py)
    await advance(node, FIRST_RETRY_S)
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


async def test_a_later_attempt_runs_only_once_its_pick_is_durable(
    make_node: NodeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault-injection row R13: a job that kills its process at once (os.abort()) killed
    worker after worker, because its attempt 2 started before its pick reached the log, so
    no attempt after the first was ever recorded and its retries never ran out. A first
    attempt still runs ahead of its pick; a later one waits for it."""
    app = App()
    started: list[int] = []

    @app.job("fails_once")
    async def fails_once(ctx: JobContext, payload: Any) -> int:
        started.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return ctx.attempt

    clock = ManualClock()
    node = await make_node(app, clock=clock)
    log = node.backend.topic(JOBS)
    append, reached, gate = log.append, asyncio.Event(), asyncio.Event()

    async def held(entries: Any, *args: Any, **kwargs: Any) -> Any:
        if any(b'"JobPicked"' in e.value and b'"attempt":2' in e.value for e in entries):
            reached.set()
            await gate.wait()  # the pick of attempt 2 is not durable until the gate opens
        return await append(entries, *args, **kwargs)

    monkeypatch.setattr(log, "append", held)
    job_id = await enqueue(node, "fails_once", max_retries=1)
    failed = await wait_until(node, job_id, attempt_is(1, S.SCHEDULED))
    assert failed.run_at is not None
    clock.advance((failed.run_at - to_ms(clock.now())) / 1000 + 0.01)  # due: picked again
    await asyncio.wait_for(reached.wait(), 5)
    try:
        for _ in range(100):  # turns of the loop: a handler started ahead would have run
            await asyncio.sleep(0)
        assert started == [1]  # before: [1, 2], attempt 2 running on a pick not in the log
    finally:
        gate.set()
    done = await wait_until(node, job_id, S.COMPLETED)
    assert done.attempt == 2 and started == [1, 2]


async def test_a_job_pending_at_a_takeover_runs_its_first_attempt_once_its_pick_is_durable(
    make_node: NodeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault-injection row R13: a first attempt runs ahead of its pick, so a job that kills
    its process at once lost its pick again at every owner, and its retries only began once
    a pick happened to land first. The jobs a takeover finds pending (the head of the pick
    order, where such a job is) wait for their pick; jobs enqueued later do not."""
    app, ran, release = recording_app()
    first = await make_node(app, concurrency=1)
    blocker = await enqueue(first, "blocker")
    await wait_until(first, blocker, S.IN_PROGRESS)
    found = await enqueue(first, "record", "found pending")
    await settle(first)
    await make_node.stop(first)  # the blocker is handed back; the other job stays pending

    append, reached, gate = SQLiteLog.append, asyncio.Event(), asyncio.Event()

    async def held(self: SQLiteLog, entries: Any, *args: Any, **kwargs: Any) -> Any:
        if any(e.key == found and b'"JobPicked"' in e.value for e in entries):
            reached.set()
            await gate.wait()  # its pick is not durable until the gate opens
        return await append(self, entries, *args, **kwargs)

    monkeypatch.setattr(SQLiteLog, "append", held)
    second = await make_node(app)
    await asyncio.wait_for(reached.wait(), 5)
    later = await enqueue(second, "record", "enqueued later")
    try:
        for _ in range(200):  # turns of the loop: a handler started ahead would have run
            await asyncio.sleep(0)
        assert ran == ["enqueued later"]  # before: the pending job ran ahead of its pick too
    finally:
        gate.set()
        release.set()
    for job_id in (found, later):
        assert (await wait_until(second, job_id, S.COMPLETED)).attempt == 1
    assert sorted(ran) == ["enqueued later", "found pending"]
