"""Deadlines of the partition owner (due times, leases, timeouts), judged by its clock."""

from __future__ import annotations

import asyncio
import enum
import heapq
from collections.abc import Callable
from datetime import UTC, datetime

from jobledger.services.runtime.clock import Clock


class TimerKind(enum.IntEnum):
    DUE = 1  # a scheduled job's run_at
    LEASE = 2  # a running attempt's lease expiry
    TIMEOUT = 3  # a running attempt's timeout_seconds


Timer = tuple[int, TimerKind, str, int]  # (deadline ms, kind, job id, attempt)


class Timers:
    """A heap of deadlines and one task that fires them. A fired timer is only a hint:
    the callback checks the job's current state before it acts."""

    def __init__(self, clock: Clock, fire: Callable[[list[Timer], int], None]):
        self._clock = clock
        self._fire = fire
        self._heap: list[Timer] = []
        self._rearm = asyncio.Event()

    def add(self, deadline_ms: int, kind: TimerKind, job_id: str, attempt: int) -> None:
        if not self._heap or deadline_ms < self._heap[0][0]:
            self._rearm.set()
        heapq.heappush(self._heap, (deadline_ms, kind, job_id, attempt))

    def __len__(self) -> int:
        return len(self._heap)

    async def run(self) -> None:
        while True:
            self._rearm.clear()
            now_ms = int(self._clock.now().timestamp() * 1000)
            due: list[Timer] = []
            while self._heap and self._heap[0][0] <= now_ms:
                due.append(heapq.heappop(self._heap))
            if due:
                self._fire(due, now_ms)
                continue
            waits: list[asyncio.Future[object]] = [asyncio.ensure_future(self._rearm.wait())]
            if self._heap:
                deadline = datetime.fromtimestamp(self._heap[0][0] / 1000, UTC)
                waits.append(asyncio.ensure_future(self._clock.sleep_until(deadline)))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
