"""Driving schedules on a harness node (tests/support/harness.py): the scheduler is one more
decider, so `settle` here also waits for its decisions and their appends."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from jobledger.projections.schedules import ScheduleState
from jobledger.schemas import SCHEDULES, Envelope, decode
from jobledger.schemas.schedules import ScheduleView
from jobledger.services.node.embedded import EmbeddedNode
from jobledger.services.schedules.commands import parse_request
from tests.support import harness

from .harness import SAFETY_SECONDS, clock_of


async def settle(node: EmbeddedNode) -> None:
    """The harness's settle, until the scheduler too is quiet (its decisions made and
    appended) and it has read its own appends back, twice in a row with nothing new."""
    scheduler = node.scheduler
    assert scheduler is not None

    async def go() -> None:
        previous = None
        while True:
            await harness.settle(node)
            await scheduler.quiet()
            ends = await node.backend.topic(SCHEDULES).end_offsets()
            read = all(scheduler.positions.get(p, 0) >= end for p, end in ends.items())
            if read and not scheduler.busy() and ends == previous:
                return
            previous = ends if read else None
            await asyncio.sleep(0)
    await asyncio.wait_for(go(), SAFETY_SECONDS)


async def advance(node: EmbeddedNode, seconds: float, step: float = 1.0) -> None:
    """Move the ManualClock on in steps, settling the node and its scheduler after each."""
    await settle(node)
    left = seconds
    while left > 1e-9:
        moved = min(step, left)
        clock_of(node).advance(moved)
        left -= moved
        await settle(node)


async def define(node: EmbeddedNode, **body: Any) -> ScheduleView:
    """Define a schedule through the same commands the API uses."""
    return await node.schedules.define(parse_request(msgspec.json.encode(body)))


async def state(node: EmbeddedNode, schedule_id: str) -> ScheduleState:
    found = await node.queries.schedule_state(schedule_id)
    assert found is not None, f"no schedule {schedule_id}"
    return found


async def schedule_events(node: EmbeddedNode, schedule_id: str | None = None) -> list[Envelope]:
    """Every event on the schedules topic (of one schedule), in log order: the log itself."""
    log = node.backend.topic(SCHEDULES)
    out: list[Envelope] = []
    for partition, end in (await log.end_offsets()).items():
        if end:
            out += [decode(r.value) for r in await log.read(partition, 0, limit=end)]
    return [e for e in out if schedule_id is None or e.key == schedule_id]


def of_type(envs: list[Envelope], name: str) -> list[Any]:
    return [e.event for e in envs if e.type == name]
