"""Waiting until the jobs read model shows an appended record (read-your-writes).

An enqueue that must answer only once a GET would find the job waits here. One listener
on the projector resolves every waiter whose record a committed batch covered, with the
job's state as that batch left it: no lock, no task and no read-model query per waiter
(POST /api/v1/tasks waits once per request, so this sits on its hot path).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

from jobledger.projections.jobs import JobState
from jobledger.projections.projector import Projected, Projector

JOBS_MODEL = "jobs"


class VisibilityWaiters:
    def __init__(self, projector: Projector):
        self._projector = projector
        # partition -> heap of (offset, tie-breaker, job id, future), lowest offset first
        self._waiting: dict[int, list[tuple[int, int, str, asyncio.Future[JobState | None]]]] = {}
        self._tie = itertools.count()
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
        future: asyncio.Future[JobState | None] = asyncio.get_running_loop().create_future()
        entry = (offset, next(self._tie), job_id, future)
        heapq.heappush(self._waiting.setdefault(partition, []), entry)
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            return None  # the cancelled future is dropped when its partition moves past it

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
