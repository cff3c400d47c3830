"""Waiting until the jobs read model shows an appended record (read-your-writes).

An enqueue that must answer only once a GET would find the job waits here. One listener
on the projector resolves every waiter whose record a committed batch covered, with the
job's state as that batch left it: no lock, no task and no read-model query per waiter
(POST /api/v1/tasks waits once per request, so this sits on its hot path). Nor a timer
per waiter: an asyncio.timeout per request (a Timeout, a timer scheduled and cancelled)
was about 7 % of the event loop under POST load. One timer expires every due wait at
once, at most EXPIRY_SLACK seconds late.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

from jobledger.projections.jobs import JobState
from jobledger.projections.projector import Projected, Projector

JOBS_MODEL = "jobs"
EXPIRY_SLACK = 0.05  # a timed-out wait answers at most this late: one timer serves many


class VisibilityWaiters:
    def __init__(self, projector: Projector):
        self._projector = projector
        # partition -> heap of (offset, tie-breaker, job id, future), lowest offset first
        self._waiting: dict[int, list[tuple[int, int, str, asyncio.Future[JobState | None]]]] = {}
        self._tie = itertools.count()
        # (deadline, tie-breaker, future) of every wait, earliest first; resolved ones too
        # until their deadline passes.
        self._deadlines: list[tuple[float, int, asyncio.Future[JobState | None]]] = []
        self._timer: asyncio.TimerHandle | None = None
        projector.listeners.append(self._on_projected)

    def applied(self, partition: int, offset: int) -> bool:
        return self._projector.positions[JOBS_MODEL].get(partition, 0) > offset

    async def wait(self, partition: int, offset: int, job_id: str,
                   timeout: float) -> JobState | None:
        """The job's state once the jobs model has applied (partition, offset): the state
        the batch that applied it left, or None (applied earlier, the record did not change
        the job, or `timeout` seconds passed first)."""
        if self.applied(partition, offset):
            return None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[JobState | None] = loop.create_future()
        tie = next(self._tie)
        heapq.heappush(self._waiting.setdefault(partition, []), (offset, tie, job_id, future))
        deadline = loop.time() + timeout
        heapq.heappush(self._deadlines, (deadline, tie, future))
        if self._timer is None or self._timer.when() > deadline + EXPIRY_SLACK:
            self._expire_at(loop, deadline)
        return await future  # (a timed-out one is dropped when its partition moves past it)

    def _expire_at(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when + EXPIRY_SLACK, self._expire)

    def _expire(self) -> None:
        """Answer None to every wait whose deadline has passed; come back for the next."""
        self._timer = None
        loop = asyncio.get_running_loop()
        now, deadlines = loop.time(), self._deadlines
        while deadlines and (deadlines[0][0] <= now or deadlines[0][2].done()):
            future = heapq.heappop(deadlines)[2]
            if not future.done():
                future.set_result(None)
        if deadlines:
            self._expire_at(loop, deadlines[0][0])

    def _on_projected(self, projected: Projected) -> None:
        if not self._waiting:
            return
        jobs = projected.change.jobs
        for partition, end in projected.positions.items():
            heap = self._waiting.get(partition)
            while heap and heap[0][0] < end:
                _offset, _tie, job_id, future = heapq.heappop(heap)
                if not future.done():
                    future.set_result(jobs.get(job_id))
            if heap is not None and not heap:
                del self._waiting[partition]
