"""A worker's heartbeats: while its attempts run, it keeps their leases and says it lives.

Every `every` seconds (a third of the lease by default, DispatcherConfig.heartbeat_every)
one beat appends a JobHeartbeat per running attempt, renewing its lease to a full lease
from now by the owner's clock, and one WorkerHeartbeat with the worker's load (CPU, memory,
the jobs it runs). A worker that stops beating loses its attempts when their leases run
out: the partition owner appends JobLeaseExpired (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import timedelta

import psutil

from jobledger.schemas import Actor, JobHeartbeat, WorkerHeartbeat
from jobledger.services.runtime.clock import Clock
from jobledger.services.runtime.executor import Executor
from jobledger.services.write.publisher import NO_CAUSE, Cause, Publisher, unchecked


class Heartbeats:
    def __init__(
        self, executor: Executor, publisher: Publisher, clock: Clock, actor: Actor,
        lease_seconds: float, every: float, partitions: Callable[[], Collection[int]] = set,
    ):
        self.executor = executor
        self.publisher = publisher
        self.clock = clock
        self.actor = actor  # the worker: its id keys the WorkerHeartbeat
        self.lease_seconds = lease_seconds
        self.every = every
        self.partitions = partitions  # the jobs partitions the worker decides for now
        self.cause: Cause = NO_CAUSE  # the worker's start, once appended (Dispatcher.start)
        self._process = psutil.Process()

    async def run(self) -> None:
        while True:
            await self.clock.sleep(self.every)
            self.beat()

    def beat(self) -> None:
        """Renew the lease of every running attempt and report this worker's load."""
        lease = self.clock.now() + timedelta(seconds=self.lease_seconds)
        # A beat the log refuses (a full disk) is not appended again: the next one renews.
        for job_id, run in list(self.executor.running.items()):
            self.publisher.publish_then(
                JobHeartbeat(job_id=job_id, attempt=run.attempt, lease_expires_at=lease,
                             progress=run.ctx.progress_now),
                job_id, unchecked, actor=self.actor, causation_id=run.ctx.pick_id,
                correlation_id=run.ctx.correlation_id,
            )
        worker_id = self.actor.id
        self.publisher.publish_then(
            WorkerHeartbeat(
                worker_id=worker_id, cpu_percent=self._process.cpu_percent(),
                memory_mb=round(self._process.memory_info().rss / 2**20, 1),
                current_jobs=sorted(self.executor.running),
                partitions=sorted(self.partitions()),
            ),
            worker_id, unchecked, actor=self.actor, **self.cause,
        )
