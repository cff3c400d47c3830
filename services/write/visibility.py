"""Waiting until the jobs read model shows an appended record (read-your-writes).

An enqueue that must answer only once a GET would find the job waits here. One listener
on the projector resolves every waiter whose record a committed batch covered, with the
job's state as that batch left it: no lock, no task and no read-model query per waiter
(POST /api/v1/tasks waits once per request, so this sits on its hot path). Nor a timer
per waiter: an asyncio.timeout per request (a Timeout, a timer scheduled and cancelled)
was a noticeable share of the event loop under POST load (docs/performance.md, "Figures
behind the code"). One timer expires every due wait at
once, at most EXPIRY_SLACK seconds late. An answered wait leaves nothing behind: a heap
of deadlines kept each request's future and tuple for the whole timeout (5 s), long after
its answer, so that thousands of them lived on into the collector's oldest generation.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

from jobledger.projections.jobs import JobState
from jobledger.services.runtime.projector import Projected, Projector

JOBS_MODEL = "jobs"
EXPIRY_SLACK = 0.05  # a timed-out wait answers at most this late: one timer serves many


# (offset, tie-breaker, deadline, job id, future): a heap of them per partition
_Wait = tuple[int, int, float, str, "asyncio.Future[JobState | None]"]


class VisibilityWaiters:
    def __init__(self, projector: Projector):
        self._projector = projector
        # partition -> heap of the waits not answered yet, lowest offset first
        self._waiting: dict[int, list[_Wait]] = {}
        self._tie = itertools.count()
        self._timer: asyncio.TimerHandle | None = None  # at the earliest deadline waiting
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
        deadline = loop.time() + timeout
        heapq.heappush(self._waiting.setdefault(partition, []),
                       (offset, next(self._tie), deadline, job_id, future))
        if self._timer is None or self._timer.when() > deadline + EXPIRY_SLACK:
            self._expire_at(loop, deadline)
        return await future

    def _expire_at(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when + EXPIRY_SLACK, self._expire)

    def _expire(self) -> None:
        """Answer None to every wait whose deadline has passed; come back at the earliest
        deadline left. It walks the waits not answered yet: a few dozen under load, and
        while they are answered in time the timer fires once per timeout."""
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        for partition, heap in list(self._waiting.items()):
            kept = []
            for wait in heap:
                future, deadline = wait[4], wait[2]
                if future.done():
                    continue  # its caller has gone
                if deadline <= now:
                    future.set_result(None)  # timed out
                else:
                    kept.append(wait)
            heapq.heapify(kept)
            if kept:
                self._waiting[partition] = kept
            else:
                del self._waiting[partition]
        deadlines = [wait[2] for heap in self._waiting.values() for wait in heap]
        if deadlines:
            self._expire_at(loop, min(deadlines))

    def _on_projected(self, projected: Projected) -> None:
        if not self._waiting:
            return
        jobs = projected.change.jobs
        for partition, end in projected.positions.items():
            heap = self._waiting.get(partition)
            while heap and heap[0][0] < end:
                _offset, _tie, _deadline, job_id, future = heapq.heappop(heap)
                if not future.done():
                    future.set_result(jobs.get(job_id))
            if heap is not None and not heap:
                del self._waiting[partition]

