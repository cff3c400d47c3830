"""The scheduler in an embedded node, driven by a ManualClock: every fire time enqueues its
job once, across restarts; misfire policies; max_instances; pause and resume; manual runs;
jitter. Real SQLite files; restarts are real node stops and starts on the same file."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from jobledger.projections.schedules import fire_key
from jobledger.schemas import JOBS, SCHEDULES, JobEnqueued, JobStatus, decode
from jobledger.schemas.common import to_ms
from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext
from jobledger.services.handlers.demo import demo
from jobledger.services.log.sqlite import SQLiteLogBackend
from jobledger.services.node.embedded import EmbeddedNode
from jobledger.services.runtime.clock import ManualClock
from jobledger.services.write.producer import job_id_for_key
from tests.support.harness import SAFETY_SECONDS, NodeFactory, clock_of, history, runs, wait_until
from tests.support.schedules_harness import advance, define, of_type, schedule_events, settle, state

T0 = ManualClock().now()  # the harness clock's start


def at(seconds: float) -> Any:
    return T0 + timedelta(seconds=seconds)


async def jobs_of(node: EmbeddedNode, schedule_id: str) -> dict[int, str]:
    """Fire time (seconds after T0) -> status of the job enqueued for it."""
    rows = await node.queries.db.execute_fetchall(
        "SELECT idempotency_key, status FROM jobs WHERE idempotency_key LIKE ?",
        (f"schedule:%:{schedule_id}",))
    out = {}
    for key, status in rows:
        fire_ms = int(key.split(":")[1])
        out[(fire_ms - to_ms(T0)) // 1000] = status
    return out


async def fired_times(node: EmbeddedNode, schedule_id: str) -> list[float]:
    events = of_type(await schedule_events(node, schedule_id), "ScheduleFired")
    return [(e.fire_time - T0).total_seconds() for e in events if not e.manual]


async def test_each_fire_time_enqueues_its_job_once_and_the_job_runs(
    make_node: NodeFactory
) -> None:
    node = await make_node(demo)
    await define(node, id="tick", task_type="echo", payload={"n": 1}, trigger="interval",
                 seconds=10, priority=200, queue="ticks")
    await advance(node, 35)
    assert await fired_times(node, "tick") == [10, 20, 30]
    assert await jobs_of(node, "tick") == {10: "completed", 20: "completed", 30: "completed"}
    job = job_id_for_key(fire_key("tick", to_ms(at(30))))
    [enqueued] = [e.event for e in await history(node, job) if isinstance(e.event, JobEnqueued)]
    assert (enqueued.task_type, enqueued.priority, enqueued.queue, bytes(enqueued.payload)) == (
        "echo", 200, "ticks", b'{"n":1}')
    view = await node.schedules.view("tick")
    assert (view.last_fire_time, view.last_status, view.last_task_id) == (
        "2026-01-01T00:00:30.000Z", "completed", job)
    assert view.next_run_time == "2026-01-01T00:00:40.000Z" and not view.is_running


async def test_a_restart_in_the_middle_of_a_fire_does_not_fire_twice(
    make_node: NodeFactory
) -> None:
    clock = ManualClock()
    first = await make_node(demo, clock=clock)
    await define(first, id="tick", task_type="echo", trigger="interval", seconds=10)
    scheduler = first.scheduler
    assert scheduler is not None
    await settle(first)
    clock.advance(10)
    # The scheduler hands the job to the log; the process "dies" before ScheduleFired:
    # its confirming task is cancelled, as a kill would end it.
    async def decided() -> None:  # the decision's query runs on a thread: yield until done
        while not scheduler._confirming:
            await asyncio.sleep(0)

    await asyncio.wait_for(decided(), SAFETY_SECONDS)
    for task in list(scheduler._confirming):
        task.cancel()
    await make_node.stop(first)
    job = job_id_for_key(fire_key("tick", to_ms(at(10))))
    # On the file now: the job's JobEnqueued is durable, no ScheduleFired was written.
    assert await _types_on_file(make_node.db) == ["ScheduleDefined", "JobEnqueued"]

    second = await make_node(demo, clock=clock)
    await advance(second, 5)
    # Decided again: the same key, the same job id, so a duplicate that changed nothing.
    assert await _types_on_file(make_node.db) == [
        "ScheduleDefined", "ScheduleFired", "JobEnqueued", "JobEnqueued"]
    assert await fired_times(second, "tick") == [10]
    assert await jobs_of(second, "tick") == {10: "completed"}
    assert [status for _, status, _ in await runs(second, job)] == ["COMPLETED"]


async def _types_on_file(db: Any) -> list[str]:
    """Schedule events (schedules topic), then JobEnqueued events (jobs topic), read from
    the log file itself."""
    backend = await SQLiteLogBackend.open(db, {}, read_only=True)
    try:
        out = []
        for topic in (SCHEDULES, JOBS):
            log = backend.topic(topic)
            for partition, end in (await log.end_offsets()).items():
                for record in await log.read(partition, 0, limit=end + 1):
                    env = decode(record.value)
                    if env.type.startswith("Schedule") or env.type == "JobEnqueued":
                        out.append(env.type)
        return out
    finally:
        await backend.close()


async def test_a_clean_restart_resumes_the_fire_times_without_repeating_one(
    make_node: NodeFactory
) -> None:
    clock = ManualClock()
    first = await make_node(demo, clock=clock)
    await define(first, id="tick", task_type="echo", trigger="interval", seconds=10)
    await advance(first, 25)
    await make_node.stop(first)
    second = await make_node(demo, clock=clock)
    await advance(second, 20)
    assert await fired_times(second, "tick") == [10, 20, 30, 40]
    assert set(await jobs_of(second, "tick")) == {10, 20, 30, 40}


@pytest.mark.parametrize(("policy", "grace", "runs_for", "skips"), [
    ("coalesce", 10, [240], [(120, 180, 2, "coalesced")]),
    ("skip", 10, [], [(120, 240, 3, "misfire")]),
    ("run_all", 10, [120, 180, 240], []),
    # With a grace longer than the lateness of 240 (21 s), 240 is on time, not missed.
    ("skip", 30, [240], [(120, 180, 2, "misfire")]),
    ("coalesce", 30, [240], [(120, 180, 2, "coalesced")]),
])
async def test_downtime_across_three_fire_times_under_each_misfire_policy(
    make_node: NodeFactory, policy: str, grace: float, runs_for: list[int],
    skips: list[tuple[int, int, int, str]],
) -> None:
    clock = ManualClock()
    first = await make_node(demo, clock=clock)
    await define(first, id="tick", task_type="echo", trigger="interval", seconds=60,
                 misfire_policy=policy, misfire_grace_time=grace)
    await advance(first, 61)
    await make_node.stop(first)
    clock.advance(200)  # down from 61 s to 261 s: 120, 180 and 240 pass unseen
    second = await make_node(demo, clock=clock)
    await settle(second)
    assert await fired_times(second, "tick") == [60, *runs_for]
    assert set(await jobs_of(second, "tick")) == {60, *runs_for}
    skipped = of_type(await schedule_events(second, "tick"), "ScheduleSkipped")
    assert [((s.fire_time - T0).total_seconds(),
             ((s.last_fire_time or s.fire_time) - T0).total_seconds(),
             s.count, s.reason) for s in skipped] == skips
    # Then it goes on by the clock from 300 s.
    assert (await second.schedules.view("tick")).next_run_time == "2026-01-01T00:05:00.000Z"
    await advance(second, 40)
    assert (await fired_times(second, "tick"))[-1] == 300


def blocking_app() -> tuple[App, asyncio.Event]:
    app = App()
    release = asyncio.Event()

    @app.job("hold")
    async def hold(ctx: JobContext, payload: Any) -> None:
        await release.wait()

    return app, release


async def test_a_fire_while_max_instances_jobs_run_is_skipped_and_recorded(
    make_node: NodeFactory
) -> None:
    app, release = blocking_app()
    node = await make_node(app)
    await define(node, id="hold", task_type="hold", trigger="interval", seconds=10)
    await advance(node, 25)  # 10 runs and holds; 20 finds it running
    assert await fired_times(node, "hold") == [10]
    [skip] = of_type(await schedule_events(node, "hold"), "ScheduleSkipped")
    assert (skip.fire_time, skip.reason, skip.count) == (at(20), "max_instances", 1)
    view = await node.schedules.view("hold")
    assert view.is_running and view.last_status == "in_progress"
    release.set()
    await wait_until(node, view.last_task_id or "", JobStatus.COMPLETED)
    await advance(node, 10)  # 30 runs again
    assert await fired_times(node, "hold") == [10, 30]
    assert (await state(node, "hold")).skip_count == 1


async def test_max_instances_two_lets_a_second_job_start(make_node: NodeFactory) -> None:
    app, release = blocking_app()
    node = await make_node(app)
    await define(node, id="hold", task_type="hold", trigger="interval", seconds=10, max_instances=2)
    await advance(node, 35)
    assert await fired_times(node, "hold") == [10, 20]
    [skip] = of_type(await schedule_events(node, "hold"), "ScheduleSkipped")
    assert (skip.fire_time, skip.reason) == (at(30), "max_instances")
    release.set()


async def test_pause_stops_timed_fires_and_resume_does_not_run_the_ones_passed(
    make_node: NodeFactory,
) -> None:
    node = await make_node(demo)
    await define(node, id="tick", task_type="echo", trigger="interval", seconds=10)
    await advance(node, 12)
    paused = await node.schedules.pause("tick")
    assert (paused.state, paused.next_run_time) == ("paused", None)
    await advance(node, 40)  # 20..50 pass while paused
    assert await fired_times(node, "tick") == [10]
    resumed = await node.schedules.resume("tick")
    assert (resumed.state, resumed.next_run_time) == ("active", "2026-01-01T00:01:00.000Z")
    await advance(node, 10)
    assert await fired_times(node, "tick") == [10, 60]
    assert not of_type(await schedule_events(node, "tick"), "ScheduleSkipped")


async def test_a_manual_trigger_runs_the_job_now_and_leaves_the_timed_fires_alone(
    make_node: NodeFactory,
) -> None:
    node = await make_node(demo)
    await define(node, id="report", task_type="echo", payload="r", trigger="manual")
    await define(node, id="tick", task_type="echo", trigger="interval", seconds=10)
    await advance(node, 15)
    assert (await node.schedules.view("report")).next_run_time is None
    assert await jobs_of(node, "report") == {}

    task_id = await node.schedules.trigger("report")
    done = await wait_until(node, task_id, JobStatus.COMPLETED)
    assert bytes(done.result or b"") == b'"r"'
    tick_task = await node.schedules.trigger("tick")  # a timed schedule can be run now too
    await settle(node)
    report = await node.schedules.view("report")
    assert (report.last_task_id, report.last_status, report.last_run_at) == (
        task_id, "completed", "2026-01-01T00:00:15.000Z")
    [fired] = of_type(await schedule_events(node, "report"), "ScheduleFired")
    assert fired.manual and fired.job_id == task_id
    tick = await state(node, "tick")
    assert (tick.last_job_id, tick.last_fire_time) == (tick_task, to_ms(at(10)))
    await advance(node, 5)
    assert await fired_times(node, "tick") == [10, 20]


async def test_a_date_schedule_fires_once(make_node: NodeFactory) -> None:
    node = await make_node(demo)
    await define(node, id="once", task_type="echo", trigger="date", run_date="2026-01-01T00:00:30Z")
    await advance(node, 60)
    assert await fired_times(node, "once") == [30]
    view = await node.schedules.view("once")
    assert (view.state, view.next_run_time, view.last_status) == ("active", None, "completed")


async def test_jitter_delays_the_job_not_the_fire_and_is_stable(make_node: NodeFactory) -> None:
    node = await make_node(demo)
    await define(node, id="j", task_type="echo", trigger="interval", seconds=60, jitter=30)
    await advance(node, 60)
    job_id = job_id_for_key(fire_key("j", to_ms(at(60))))
    job = await node.queries.job(job_id)
    assert job is not None and job.status == JobStatus.SCHEDULED
    assert job.run_at is not None and to_ms(at(60)) < job.run_at < to_ms(at(90))
    await advance(node, 30)
    assert (await node.queries.job(job_id)).status == JobStatus.COMPLETED  # type: ignore[union-attr]


async def test_a_changed_trigger_counts_from_the_change(make_node: NodeFactory) -> None:
    from jobledger.services.schedules.commands import parse_request

    node = await make_node(demo)
    await define(node, id="tick", task_type="echo", trigger="interval", seconds=10)
    await advance(node, 15)
    view = await node.schedules.update("tick", parse_request(b'{"seconds": 30}'))
    assert view.trigger == {"type": "interval", "seconds": 30.0}
    assert view.next_run_time == "2026-01-01T00:00:45.000Z"
    await advance(node, 31)
    assert await fired_times(node, "tick") == [10, 45]
    assert clock_of(node).now() == at(46)
