"""The partition owner's ready set: pending jobs in pick order, one heap per queue.

Order: higher priority first, then earlier run time, then enqueue order. Entries are
removed lazily: a popped entry whose job is no longer pending is skipped by the caller.
"""

from __future__ import annotations

import heapq

from jobledger.projections.jobs import JobState

ReadyKey = tuple[int, int, int, int, str]


def ready_key(job: JobState) -> ReadyKey:
    run_at = job.run_at if job.run_at is not None else job.created_at
    return (-job.priority, run_at, job.created_at, job.created_offset, job.job_id)


class ReadySet:
    def __init__(self) -> None:
        self._heaps: dict[str, list[ReadyKey]] = {}
        self.paused: set[str] = set()

    def push(self, job: JobState) -> None:
        heapq.heappush(self._heaps.setdefault(job.queue, []), ready_key(job))

    def pop(self) -> str | None:
        """The job id that should run next among queues not paused, or None."""
        best: list[ReadyKey] | None = None
        for queue, heap in self._heaps.items():
            if heap and queue not in self.paused and (best is None or heap[0] < best[0]):
                best = heap
        return heapq.heappop(best)[-1] if best is not None else None

    def __len__(self) -> int:
        return sum(len(h) for q, h in self._heaps.items() if q not in self.paused)
