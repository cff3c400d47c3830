"""The workers reducer: registration, heartbeats and liveness of each worker. Pure."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
from msgspec.structs import replace

from jobledger.schemas import Envelope, WorkerHeartbeat, WorkerLost, WorkerStarted, WorkerStopped
from jobledger.schemas.common import to_ms
from jobledger.schemas.lifecycle import WorkerStatus


class WorkerState(msgspec.Struct, frozen=True, gc=False):
    worker_id: str
    hostname: str
    pid: int
    concurrency: int
    registered_at: int
    last_heartbeat: int
    status: WorkerStatus
    current_jobs: list[str] = []
    cpu_percent: float = 0.0
    memory_mb: float = 0.0
    partitions: list[int] = []  # the jobs partitions it decided for at its last heartbeat
    started_event_id: str | None = None  # its WorkerStarted: what a WorkerLost cites


def reduce_worker(state: WorkerState | None, env: Envelope) -> WorkerState | None:
    event = env.event
    now = to_ms(env.time)
    if isinstance(event, WorkerStarted):
        return WorkerState(
            worker_id=event.worker_id, hostname=event.hostname, pid=event.pid,
            concurrency=event.concurrency, registered_at=now, last_heartbeat=now,
            status=WorkerStatus.ALIVE, started_event_id=env.id,
        )
    if state is None:
        return None
    match event:
        case WorkerHeartbeat() if state.status == WorkerStatus.ALIVE:
            return replace(
                state, last_heartbeat=now, cpu_percent=event.cpu_percent,
                memory_mb=event.memory_mb, current_jobs=event.current_jobs,
                partitions=event.partitions,
            )
        case WorkerStopped():
            return replace(state, status=WorkerStatus.STOPPED, current_jobs=[], partitions=[])
        case WorkerLost() if state.status == WorkerStatus.ALIVE:
            return replace(state, status=WorkerStatus.LOST, current_jobs=[], partitions=[])
    return state


def declared_task_types(envs: Iterable[Envelope]) -> dict[str, list[str]]:
    """The task types of each worker that started in these events, by worker id: its
    latest WorkerStarted's, which replace what it declared before. Pure."""
    declared: dict[str, list[str]] = {}
    for env in envs:
        if isinstance(env.event, WorkerStarted):
            declared[env.event.worker_id] = sorted(set(env.event.task_types))
    return declared
