"""Shapes of the REST API's request and response bodies. Request bodies forbid unknown
fields (a typo is an error, not a silently ignored option); log decoders accept them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from .common import Name, NonNegativeInt, PositiveSeconds, Priority

MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_BATCH = 1000

IdempotencyKey = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class TaskRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    task_type: Name
    payload: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))
    priority: Priority = 128
    schedule_at: datetime | None = None
    delay_seconds: Annotated[float, msgspec.Meta(ge=0)] | None = None
    # None: the handler's default (@app.job(timeout=..., max_retries=...)), else 300 s / 3.
    timeout_seconds: PositiveSeconds | None = None
    max_retries: NonNegativeInt | None = None
    idempotency_key: IdempotencyKey | None = None
    queue: Name = "default"


class BatchRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    tasks: Annotated[list[TaskRequest], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class TaskCreated(msgspec.Struct):
    task_id: str
    status: str


class BatchCreated(msgspec.Struct):
    task_ids: list[str]


class Progress(msgspec.Struct):
    processed: int
    total: int | None
    failed: int


class TaskDetail(msgspec.Struct):
    task_id: str
    task_type: str
    queue: str
    status: str
    priority: int
    payload: msgspec.Raw
    created_at: str
    updated_at: str
    scheduled_at: str | None
    started_at: str | None
    finished_at: str | None
    result: msgspec.Raw | None
    error: str | None
    retry_count: int
    max_retries: int | None
    timeout_seconds: float | None
    attempt: int
    worker_id: str | None
    idempotency_key: str | None
    cancel_requested: bool
    progress: Progress


class TaskSummary(msgspec.Struct):
    task_id: str
    task_type: str
    queue: str
    status: str
    priority: int
    created_at: str
    updated_at: str


class ErrorBody(msgspec.Struct):
    error: str
    code: str
    field: str | None = None
    details: Any = None


class RunSummary(msgspec.Struct):
    """One attempt of a task."""

    run_id: str
    task_id: str
    attempt: int
    task_type: str
    status: str  # RUNNING | COMPLETED | FAILED | CANCELLED
    worker_id: str | None
    started_at: str | None
    ended_at: str | None
    duration_ms: int | None
    progress: Progress
    error: str | None


class RunLog(msgspec.Struct):
    id: str
    level: str
    message: str
    details: msgspec.Raw
    created_at: str


class RunDetail(RunSummary):
    stack: str | None = None
    logs: list[RunLog] = []


class HistoryEntry(msgspec.Struct):
    """One event of a task's audit trail, as recorded in the log. `event` holds the event's
    own fields (its "type" among them)."""

    event_id: str
    type: str
    time: str
    partition: int
    offset: int
    attempt: int | None
    worker_id: str | None
    actor: dict[str, str]
    causation_id: str | None
    correlation_id: str | None
    event: msgspec.Raw  # the event as JSON
