"""Hand-built envelopes and job states, and a real log to put them in, shared by the
projection and runtime tests.

Times are fixed (T0 plus whole seconds) so that every test and every replay sees the same
timestamps: the reducers take time from the events only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from jobledger.projections.jobs import JobState
from jobledger.schemas import Actor, ActorKind, Envelope, Event, JobStatus, encode, topic_of
from jobledger.schemas.api import TaskDetail
from jobledger.services.log.protocol import Entry, Position
from jobledger.services.log.sqlite import SQLiteLogBackend

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
PARTITIONS: Mapping[str, int] = {"jobs": 2, "logs": 2, "workers": 1, "security": 1}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def key_of(event: Event) -> str:
    for name in ("job_id", "worker_id", "queue", "key_id", "username"):
        value = getattr(event, name, None)
        if isinstance(value, str):
            return value
    raise AssertionError(f"no key field on {event!r}")


def envelope(
    event: Event, seconds: float = 0, *, event_id: str | None = None, partition: int = 0,
    offset: int = 0, actor: ActorKind | Actor = ActorKind.DISPATCHER,
) -> Envelope:
    """An envelope as the reducers see it after a read: partition and offset filled in."""
    return Envelope(
        id=event_id or f"ev-{key_of(event)}-{type(event).__name__}-{seconds}",
        key=key_of(event),
        time=at(seconds),
        actor=actor if isinstance(actor, Actor) else Actor(actor),
        event=event,
        partition=partition,
        offset=offset,
    )


async def open_log(path: Path) -> SQLiteLogBackend:
    return await SQLiteLogBackend.open(path, partitions=PARTITIONS)


async def append(backend: SQLiteLogBackend, envs: Iterable[Envelope]) -> list[Position]:
    """Append the envelopes, encoded, each to its event's topic under its key; one append
    per topic, so one key's records keep the order given. Positions in the order given."""
    items = list(envs)
    by_topic: dict[str, list[int]] = {}
    for i, env in enumerate(items):
        by_topic.setdefault(topic_of(env.event), []).append(i)
    positions: list[Position] = [(-1, -1)] * len(items)
    for topic, indexes in by_topic.items():
        entries = [Entry(items[i].key, encode(items[i])) for i in indexes]
        for i, pos in zip(indexes, await backend.topic(topic).append(entries), strict=True):
            positions[i] = pos
    return positions


def job_state(job_id: str = "j1", **fields: Any) -> JobState:
    """A pending job's state as the reducers would hold it, with `fields` set on top."""
    defaults: dict[str, Any] = {
        "task_type": "t", "queue": "default", "priority": 128, "payload": msgspec.Raw(b"null"),
        "status": JobStatus.PENDING, "created_at": 1_000, "updated_at": 1_000, "run_at": None,
        "timeout_seconds": None, "max_retries": None, "idempotency_key": None, "partition": 0,
        "created_offset": 0,
    }
    return JobState(job_id=job_id, **(defaults | fields))


def task_detail(status: str = "pending", attempt: int = 0, processed: int = 0,
                total: int | None = None, failed: int = 0) -> TaskDetail:
    """A task as GET /api/v1/tasks/{id} shows it, with these stage fields (the rest as a
    fresh task has them): for tests of what the CLI prints of a task."""
    return msgspec.convert({
        "task_id": "t1", "task_type": "echo", "queue": "default", "status": status,
        "priority": 128, "payload": None, "created_at": "", "updated_at": "",
        "scheduled_at": None, "started_at": None, "finished_at": None, "result": None,
        "error": None, "retry_count": 0, "max_retries": 3, "timeout_seconds": 300.0,
        "attempt": attempt, "worker_id": None, "idempotency_key": None,
        "cancel_requested": False,
        "progress": {"processed": processed, "total": total, "failed": failed}}, TaskDetail)
