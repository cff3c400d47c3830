"""Schedules declared in code (@app.job(..., schedule=...)); the schedules read model
rebuilt by replay; change notices for the WebSocket hub."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from jobledger.api.schedules import schedule_updates
from jobledger.projections.schedules import ScheduleState
from jobledger.projections.triggers import InvalidTrigger
from jobledger.services.handlers.app import App, cron, date, interval, manual
from jobledger.services.handlers.context import JobContext
from jobledger.services.node.embedded import views_path
from jobledger.services.replay.rebuild import checksums, replay
from jobledger.services.runtime.clock import ManualClock
from tests.support.harness import NodeFactory
from tests.support.schedules_harness import advance, define, of_type, schedule_events, settle


def app_with(schedule: Any) -> App:
    app = App()

    @app.job("expire_servers", schedule=schedule)
    async def expire_servers(ctx: JobContext, payload: Any) -> None:
        return None

    return app


async def test_a_declared_schedule_is_defined_once_across_restarts(make_node: NodeFactory) -> None:
    app = app_with(cron("0 * * * *", payload={"older_than_hours": 1}))
    clock = ManualClock()
    for _ in range(3):
        node = await make_node(app, clock=clock)
        await settle(node)
        await make_node.stop(node)
    node = await make_node(app, clock=clock)
    await settle(node)
    assert [e.type for e in await schedule_events(node)] == ["ScheduleDefined"]
    view = await node.schedules.view("expire_servers")
    assert (view.task_type, view.trigger, view.next_run_time) == (
        "expire_servers", {"type": "cron", "expression": "0 * * * *"}, "2026-01-01T01:00:00.000Z")
    await advance(node, 3600, step=600)
    assert [e.type for e in await schedule_events(node)] == ["ScheduleDefined", "ScheduleFired"]


async def test_a_changed_declaration_updates_the_schedule_and_keeps_it_paused(
    make_node: NodeFactory,
) -> None:
    clock = ManualClock()
    node = await make_node(app_with(cron("0 * * * *")), clock=clock)
    await node.schedules.pause("expire_servers")
    await make_node.stop(node)
    node = await make_node(app_with(cron("*/15 * * * *", max_instances=3)), clock=clock)
    await settle(node)
    assert [e.type for e in await schedule_events(node)] == [
        "ScheduleDefined", "SchedulePaused", "ScheduleUpdated"]
    view = await node.schedules.view("expire_servers")
    shown = (view.state, view.trigger["expression"], view.max_instances)
    assert shown == ("paused", "*/15 * * * *", 3)


async def test_a_removed_declared_schedule_is_defined_again_on_start(
    make_node: NodeFactory
) -> None:
    clock = ManualClock()
    node = await make_node(app_with(interval(minutes=5, id="expire")), clock=clock)
    await node.schedules.remove("expire")
    await make_node.stop(node)
    node = await make_node(app_with(interval(minutes=5, id="expire")), clock=clock)
    await settle(node)
    assert [e.type for e in await schedule_events(node)] == [
        "ScheduleDefined", "ScheduleRemoved", "ScheduleDefined"]
    assert (await node.schedules.view("expire")).state == "active"


def test_a_bad_declaration_fails_at_import_naming_the_field() -> None:
    with pytest.raises(InvalidTrigger, match="hour") as bad:
        cron(hour=25)
    assert bad.value.field == "hour"
    with pytest.raises(InvalidTrigger) as tz:
        interval(minutes=1, timezone="Nowhere/City")
    assert tz.value.field == "timezone"
    with pytest.raises(ValueError, match="priority"):
        app_with(interval(minutes=1, priority=999))
    with pytest.raises(TypeError, match="colour"):
        manual(colour="red")
    app = app_with(date(datetime(2030, 1, 1, 9), timezone="Europe/Berlin"))
    assert str(app.schedules["expire_servers"].trigger.run_date) == "2030-01-01 08:00:00+00:00"  # type: ignore[union-attr]


async def test_replay_rebuilds_the_schedules_read_model_equal_to_the_live_one(
    make_node: NodeFactory, tmp_path: Path,
) -> None:
    app = app_with(interval(seconds=30, id="expire"))

    @app.job("hold")
    async def hold(ctx: JobContext, payload: Any) -> None:
        await asyncio.Event().wait()  # runs until the node stops: later fires are skipped

    node = await make_node(app)
    await define(node, id="cron", task_type="expire_servers", trigger="cron",
                 expression="*/20 * * * * *", timezone="Europe/Berlin")
    await define(node, id="held", task_type="hold", trigger="interval", seconds=10)
    await define(node, id="gone", task_type="expire_servers", trigger="interval", seconds=15)
    await define(node, id="manual", task_type="expire_servers", trigger="manual")
    await advance(node, 35)
    await node.schedules.pause("cron")
    await node.schedules.remove("gone")
    await node.schedules.trigger("manual")
    await advance(node, 30)
    await node.schedules.resume("cron")
    await advance(node, 25)
    await make_node.stop(node)

    db = make_node.db
    live = await checksums(views_path(db))
    rebuilt = await replay(db, tmp_path / "rebuilt.db", show_progress=False)
    assert "schedules" in rebuilt
    assert rebuilt == live


async def test_projected_schedule_changes_reach_listeners_as_websocket_messages(
    make_node: NodeFactory,
) -> None:
    node = await make_node(App(), allow_unknown_task_types=True)  # no handler for echo
    seen: list[list[ScheduleState]] = []
    node.projector.schedule_listeners.append(seen.append)
    await define(node, id="tick", task_type="echo", trigger="interval", seconds=10)
    await node.schedules.pause("tick")
    await node.schedules.remove("tick")
    await settle(node)
    states = [s for batch in seen for s in batch]
    assert [s.status for s in states] == ["active", "paused", "removed"]
    messages = await schedule_updates(node.queries, states[-1:])
    assert messages == [{"type": "schedule_update", "schedule": {"id": "tick", "state": "removed"}}]
    await define(node, id="tick", task_type="echo", trigger="interval", seconds=10)
    [message] = await schedule_updates(node.queries, [states[0]])
    assert message["type"] == "schedule_update"
    assert message["schedule"]["id"] == "tick" and message["schedule"]["state"] == "active"
    assert message["schedule"]["next_run_time"] == "2026-01-01T00:00:10.000Z"
    assert of_type(await schedule_events(node), "ScheduleDefined")
