"""Events of the workers topic, keyed by worker id."""

from __future__ import annotations

import msgspec

from .common import NonNegativeInt


class WorkerStarted(msgspec.Struct, frozen=True, gc=False, tag="WorkerStarted"):
    worker_id: str
    hostname: str = ""
    pid: int = 0
    concurrency: NonNegativeInt = 0
    task_types: list[str] = []
    v: int = 1


class WorkerHeartbeat(msgspec.Struct, frozen=True, gc=False, tag="WorkerHeartbeat"):
    """Version 2 reports memory in MB (memory_mb); version 1 records, with memory_bytes,
    are still read."""

    # Version 1 is upcast on read (schemas/upcast.py).

    worker_id: str
    cpu_percent: float = 0.0
    memory_mb: float = 0.0
    current_jobs: list[str] = []
    # The jobs partitions it decides for (its group assignment in Kafka mode): who owns
    # what, for GET /api/v1/cluster. Absent before this field existed: none known.
    partitions: list[int] = []
    v: int = 2


class WorkerStopped(msgspec.Struct, frozen=True, gc=False, tag="WorkerStopped"):
    worker_id: str
    reason: str = "shutdown"
    v: int = 1


class WorkerLost(msgspec.Struct, frozen=True, gc=False, tag="WorkerLost"):
    """The owner saw no heartbeat from this worker for its lease time."""

    worker_id: str
    v: int = 1


WorkerEvent = WorkerStarted | WorkerHeartbeat | WorkerStopped | WorkerLost
