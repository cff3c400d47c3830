"""The partition owner's deadlines (services/runtime/timers.py), judged by a ManualClock the
tests advance: a timer fires once the clock reaches it, never before, in deadline order,
and an earlier timer added while the task waits for a later one is not held up by it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from jobledger.schemas.common import to_ms
from jobledger.services.runtime.clock import ManualClock
from jobledger.services.runtime.timers import Timer, TimerKind, Timers


@dataclass
class Fired:
    """What the timers fired: one list of (now_ms, timers) per call."""

    calls: list[tuple[int, list[Timer]]] = field(default_factory=list)

    def __call__(self, timers: list[Timer], now_ms: int) -> None:
        self.calls.append((now_ms, timers))

    @property
    def keys(self) -> list[str]:
        return [key for _, timers in self.calls for _, _, key, _ in timers]


@dataclass
class Running:
    clock: ManualClock
    timers: Timers
    fired: Fired
    start_ms: int


async def turns(count: int = 20) -> None:
    """Let the timers' task run (turns of the event loop; no time passes)."""
    for _ in range(count):
        await asyncio.sleep(0)


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    clock, fired = ManualClock(), Fired()
    timers = Timers(clock, fired)
    task = asyncio.create_task(timers.run())
    await turns()
    yield Running(clock, timers, fired, to_ms(clock.now()))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_timer_fires_when_the_clock_reaches_it_and_not_before(running: Running) -> None:
    running.timers.add(running.start_ms + 5_000, TimerKind.LEASE, "j1", 2)
    await turns()
    running.clock.advance(4.999)
    await turns()
    assert running.fired.calls == []

    running.clock.advance(0.001)
    await turns()
    assert running.fired.calls == [
        (running.start_ms + 5_000, [(running.start_ms + 5_000, TimerKind.LEASE, "j1", 2)]),
    ]
    assert len(running.timers) == 0


async def test_timers_due_together_fire_in_one_call_in_deadline_order(running: Running) -> None:
    for key, seconds in [("c", 3), ("a", 1), ("later", 10), ("b", 2)]:
        running.timers.add(running.start_ms + seconds * 1000, TimerKind.DUE, key, 0)
    await turns()
    running.clock.advance(5)
    await turns()
    assert [(now, [k for _, _, k, _ in t]) for now, t in running.fired.calls] == [
        (running.start_ms + 5_000, ["a", "b", "c"]),
    ]
    assert len(running.timers) == 1  # "later" still waits


async def test_an_earlier_timer_added_while_waiting_for_a_later_one_fires_first(
    running: Running,
) -> None:
    running.timers.add(running.start_ms + 60_000, TimerKind.TIMEOUT, "late", 1)
    await turns()  # the task now sleeps until the later deadline
    running.timers.add(running.start_ms + 1_000, TimerKind.DUE, "soon", 0)
    await turns()
    running.clock.advance(1)
    await turns()
    assert running.fired.keys == ["soon"]

    running.clock.advance(59)
    await turns()
    assert running.fired.keys == ["soon", "late"]


async def test_a_deadline_already_past_fires_at_once(running: Running) -> None:
    running.clock.advance(10)
    running.timers.add(running.start_ms, TimerKind.LEASE, "overdue", 3)
    await turns()
    assert running.fired.keys == ["overdue"]
