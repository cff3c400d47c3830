"""Shapes of the REST API's request and response bodies. Request bodies forbid unknown
fields (a typo is an error, not a silently ignored option); log decoders accept them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType

from .common import (
    END_YEAR,
    FIRST_YEAR,
    VERIFIED_KINDS,
    YEAR_PATTERN,
    Actor,
    ActorKind,
    Name,
    Priority,
)
from .lifecycle import JobStatus, RunStatus, WorkerStatus

# Request limits, all in one place (docs/api.md, "Limits"). A body over its limit is
# refused with 413 before it is read to the end.
MAX_PAYLOAD_BYTES = 1024 * 1024  # one task's payload, as JSON
# POST /tasks: the payload plus the other fields
MAX_TASK_BODY_BYTES = MAX_PAYLOAD_BYTES + 64 * 1024
MAX_BATCH_BODY_BYTES = 16 * 1024 * 1024  # POST /tasks/batch
MAX_BATCH = 1000  # tasks in one batch
MAX_LIST = 1000  # rows in one list answer
# Seconds of a delay or a timeout: a century, so every deadline stays a representable time.
MAX_SECONDS = 100 * 365 * 24 * 3600
MAX_RETRIES = 10_000
# A WebSocket client's message, by default (--ws-max-message-bytes): its messages are < 1 KB.
WS_MAX_MESSAGE_BYTES = 64 * 1024
# Arrays and objects a payload may nest (`--max-payload-depth`; 400 PAYLOAD_TOO_DEEP
# beyond). The setting stays under what a handler's decoder (msgspec, which recurses) and
# every reader of the log decode with room to spare.
DEFAULT_MAX_PAYLOAD_DEPTH = 64
HIGHEST_MAX_PAYLOAD_DEPTH = 512

RetryCount = Annotated[int, msgspec.Meta(description=(
    "failed attempts since enqueue or the last requeue, the last one included: not the "
    "retries made (a dead_letter task shows max_retries + 1)"))]
IdempotencyKey = Annotated[str, msgspec.Meta(
    min_length=1, max_length=200, description="the same key always names the same task")]
RequestSeconds = Annotated[float, msgspec.Meta(gt=0, le=MAX_SECONDS)]
# A JSON value passed through as given (a payload, a result, log details). The server fills
# it with msgspec.Raw, the JSON it stored, sent without decoding it again; the Python client
# decodes it into Python values (dicts, lists, ...). Either way the schema is "any JSON".
JsonValue = Any


class TaskRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """One task to enqueue. Unknown fields are refused."""

    # omit_defaults: the Python client sends only the fields not left at their defaults,
    # which makes a batch of 1,000 a third the size.

    task_type: Annotated[Name, msgspec.Meta(description="which handler runs it")]
    payload: Annotated[msgspec.Raw, msgspec.Meta(
        description=f"any JSON, at most {MAX_PAYLOAD_BYTES} bytes; passed to the handler"
    )] = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))
    priority: Priority = 128
    schedule_at: Annotated[datetime, msgspec.Meta(
        tz=True, description="run no earlier than this (with a timezone, in the years "
        f"{FIRST_YEAR} to {END_YEAR - 1}); not with delay_seconds",
        extra_json_schema={"pattern": f"^{YEAR_PATTERN}-"},
    )] | None = None
    delay_seconds: Annotated[float, msgspec.Meta(
        ge=0, le=MAX_SECONDS, description="run no earlier than now + this"
    )] | None = None
    # None: the handler's default (@app.job(timeout=..., max_retries=...)), else 300 s / 3.
    timeout_seconds: Annotated[RequestSeconds, msgspec.Meta(
        description="an attempt running longer fails; default: the handler's, else 300"
    )] | None = None
    max_retries: Annotated[int, msgspec.Meta(
        ge=0, le=MAX_RETRIES,
        description="retries after the first attempt; default: the handler's, else 3",
    )] | None = None
    idempotency_key: IdempotencyKey | None = None
    queue: Annotated[Name, msgspec.Meta(description="queues can be paused one by one")] = "default"


# What the OpenAPI document says of a body beyond its fields' own rules, by schema name.
BODY_RULES: dict[str, dict[str, Any]] = {
    "TaskRequest": {"not": {
        "description": "schedule_at and delay_seconds, not both",
        "required": ["schedule_at", "delay_seconds"],
        "properties": {"schedule_at": {"type": "string"}, "delay_seconds": {"type": "number"}},
    }},
}


class BatchRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    tasks: Annotated[list[TaskRequest], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class TaskCreated(msgspec.Struct):
    task_id: str
    status: JobStatus


class BatchCreated(msgspec.Struct):
    task_ids: list[str]
    duplicates: Annotated[list[int], msgspec.Meta(description=(
        "positions (0-based) of the tasks whose idempotency_key named a task that already "
        "existed, earlier or in this batch: nothing new was enqueued for them"))] = []


class Progress(msgspec.Struct):
    processed: int
    total: int | None
    failed: int


class TaskDetail(msgspec.Struct):
    task_id: str
    task_type: str
    queue: str
    status: JobStatus
    priority: int
    payload: JsonValue
    created_at: str
    updated_at: str
    scheduled_at: str | None
    started_at: str | None
    finished_at: str | None
    result: JsonValue | None
    error: str | None
    retry_count: RetryCount
    max_retries: Annotated[int, msgspec.Meta(description=(
        "retries after the first attempt that apply: the task's own, else its handler's, "
        "else 3; null where this server does not have the handler"))] | None
    timeout_seconds: Annotated[float, msgspec.Meta(description=(
        "seconds an attempt may run: the task's own, else its handler's, else 300; null "
        "where this server does not have the handler"))] | None
    attempt: int
    worker_id: str | None
    idempotency_key: str | None
    cancel_requested: bool
    progress: Progress


class TaskSummary(msgspec.Struct):
    task_id: str
    task_type: str
    queue: str
    status: JobStatus
    priority: int
    created_at: str
    updated_at: str
    retry_count: RetryCount
    progress: Progress


_TIME = (r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]"
         r":[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])")
_PART = r"[a-z_]+/[0-9]{1,6}:[0-9]{1,18}"
# What an as_of may be (docs/audit.md): an RFC 3339 time, or a log position.
AS_OF_PATTERN = f"^({_TIME}|{_PART}(,{_PART})*)$"


class TaskListQuery(msgspec.Struct, frozen=True):
    """The query parameters of GET /api/v1/tasks (unknown ones are ignored). An absent
    filter is UNSET, not None: `?status=null` is a bad status, not "no filter"."""

    status: Annotated[
        JobStatus, msgspec.Meta(description="only tasks in this status")] | UnsetType = UNSET
    task_type: Annotated[
        str, msgspec.Meta(description="only tasks of this type")] | UnsetType = UNSET
    queue: Annotated[str, msgspec.Meta(description="only tasks of this queue")] | UnsetType = UNSET
    created_after: Annotated[datetime, msgspec.Meta(
        tz=True, description="only tasks enqueued at or after this time (with a timezone)"
    )] | UnsetType = UNSET
    created_before: Annotated[datetime, msgspec.Meta(
        tz=True, description="only tasks enqueued before this time (with a timezone)"
    )] | UnsetType = UNSET
    search: Annotated[str, msgspec.Meta(
        min_length=1, max_length=200,
        description="only tasks whose id or idempotency key starts with this (case matters)"
    )] | UnsetType = UNSET
    limit: Annotated[int, msgspec.Meta(ge=0, le=MAX_LIST, description="at most this many")] = 100
    offset: Annotated[int, msgspec.Meta(ge=0, le=2**62, description="skip this many")] = 0
    starting_after: Annotated[str, msgspec.Meta(description=(
        "a task id: only the tasks listed after it (older, or as old with a smaller id). "
        "Paging by the last id seen sees each task once, whatever is enqueued meanwhile"
    ))] | UnsetType = UNSET
    as_of: Annotated[str, msgspec.Meta(pattern=AS_OF_PATTERN, description=(
        "list the tasks as they were at this moment: an RFC 3339 time, or a log position "
        "(topic/partition:offset,..., as the X-As-Of-Position header gives it)"
    ))] | UnsetType = UNSET


class RunListQuery(msgspec.Struct, frozen=True):
    """The query parameters of GET /api/v1/runs."""

    task_type: Annotated[
        str, msgspec.Meta(description="only runs of this task type")] | UnsetType = UNSET
    status: Annotated[
        RunStatus, msgspec.Meta(description="only runs in this status")] | UnsetType = UNSET
    limit: Annotated[int, msgspec.Meta(ge=0, le=MAX_LIST, description="at most this many")] = 100


class QueueDepth(msgspec.Struct):
    """Pending tasks per priority band: high >= 170, normal 85-169, low < 85."""

    high: int
    normal: int
    low: int


class RunsEnded(msgspec.Struct):
    """Runs (attempts) that ended in the last hour, by outcome."""

    completed: int
    failed: int


class QueueStats(msgspec.Struct):
    """One queue: its tasks per status now (statuses with none left out), whether it is
    paused, and its runs that ended in the last hour."""

    paused: bool
    counts: dict[str, int]
    last_hour: RunsEnded


class MinuteStats(msgspec.Struct):
    """One minute: runs that ended in it, and the pending tasks (every queue) at its end;
    for the current minute, now."""

    minute: Annotated[str, msgspec.Meta(description="the minute's start, ISO 8601 UTC")]
    completed: int
    failed: int
    pending: int


class Stats(msgspec.Struct):
    pending_count: int
    in_progress_count: int
    scheduled_count: int
    completed_count: int
    failed_count: int
    dead_letter_count: int
    cancelled_count: int
    completed_last_hour: int
    failed_last_hour: int
    worker_count: int
    avg_processing_time_ms: float
    queue_depth_by_priority: QueueDepth
    by_task_type: dict[str, dict[str, int]]
    lost_worker_count: Annotated[int, msgspec.Meta(
        description="workers whose heartbeats stopped without a clean shutdown")]
    last_hour_by_task_type: Annotated[dict[str, RunsEnded], msgspec.Meta(
        description="runs that ended in the last hour, per task type")]
    by_queue: Annotated[dict[str, QueueStats], msgspec.Meta(
        description="per queue: tasks per status, paused, last hour's runs")]
    per_minute: Annotated[list[MinuteStats], msgspec.Meta(
        description="the last 60 minutes, oldest first, the current one last")]


class WorkerInfo(msgspec.Struct):
    worker_id: str
    registered_at: str
    last_heartbeat: str
    current_tasks: list[str]
    cpu_usage_percent: float
    memory_usage_mb: float
    status: WorkerStatus
    hostname: str
    pid: int
    concurrency: int
    partitions: Annotated[list[int], msgspec.Meta(
        description="the jobs partitions it decides for, as of its last heartbeat")] = []


class QueueInfo(msgspec.Struct):
    queue: str
    paused: bool
    pending: int
    scheduled: int
    in_progress: int
    pending_by_priority: Annotated[QueueDepth, msgspec.Meta(
        description="its pending tasks per priority band, as queue_depth_by_priority")]


class QueuePath(msgspec.Struct, frozen=True):
    queue: Annotated[
        str, msgspec.Meta(min_length=1, max_length=200, description="the queue's name")]


class QueueToggled(msgspec.Struct):
    queue: str
    paused: bool


class Health(msgspec.Struct, omit_defaults=True):
    status: Annotated[str, msgspec.Meta(description="healthy or degraded")]
    is_leader: bool
    connected_workers: int
    pending_tasks: int
    projection_lag_ms: int
    quarantined_records: int
    crashed: Annotated[list[str], msgspec.Meta(
        description="background tasks that died; absent when none")] = []
    reason: Annotated[str | None, msgspec.Meta(
        description="why it is degraded, one clause per cause joined by '; ' (e.g. "
        "'projection jobs: disk full (SQLITE_FULL) since 2026-01-01T00:00:00Z, retrying'); "
        "absent when healthy")] = None


class PartitionInfo(msgspec.Struct):
    topic: Annotated[str, msgspec.Meta(description="jobs, logs, workers, schedules or security")]
    partition: int
    owner: Annotated[str | None, msgspec.Meta(
        description="who decides for the partition now: a worker id (jobs), a scheduler "
        "(schedules); null for topics nobody owns, or while the group rebalances")]
    end_offset: Annotated[int, msgspec.Meta(description="records in the partition")]
    projected: Annotated[int, msgspec.Meta(
        description="records of it this node's read models have applied")]
    lag: Annotated[int, msgspec.Meta(description="end_offset - projected")]


class ClusterInfo(msgspec.Struct):
    mode: Annotated[str, msgspec.Meta(description="embedded or kafka")]
    node_id: Annotated[str, msgspec.Meta(description="the API node that answered")]
    partitions: list[PartitionInfo]


class ErrorBody(msgspec.Struct):
    """Every error answer (docs/api.md, "Errors")."""

    error: Annotated[str, msgspec.Meta(description="what is wrong, naming the input")]
    code: Annotated[str, msgspec.Meta(description="UPPER_SNAKE, stable: branch on it")]
    field: Annotated[str, msgspec.Meta(
        description="the offending input, e.g. priority or tasks[3].payload")] | None = None
    details: Any = None


class RunSummary(msgspec.Struct):
    """One attempt of a task."""

    run_id: str
    task_id: str
    attempt: int
    task_type: str
    status: RunStatus
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
    details: JsonValue
    created_at: str


class RunDetail(RunSummary):
    stack: str | None = None
    logs: list[RunLog] = []


class ActorView(msgspec.Struct):
    """Who caused an event. verified: an authenticated API key or user (kind key or user);
    false for every other kind, whose id is what the actor said of itself: with auth off,
    a REST caller's X-API-Key-Name (kind api), or a worker's or node's own id."""

    kind: ActorKind
    id: str
    name: str
    verified: bool

    @classmethod
    def of(cls, actor: Actor) -> ActorView:
        return cls(actor.kind, actor.id, actor.name, actor.kind in VERIFIED_KINDS)


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
    actor: ActorView
    causation_id: str | None
    correlation_id: str | None
    event: JsonValue  # the event as JSON


class TaskView(msgspec.Struct):
    """A task as a WebSocket task_update shows it: a TaskSummary's fields."""

    task_id: str
    task_type: str
    queue: str
    status: JobStatus
    updated_at: str
    retry_count: RetryCount
    progress: Progress
    priority: int
    created_at: str


class TaskUpdate(msgspec.Struct, tag="task_update", tag_field="type"):
    """WS message: a task changed. cursor: the log position it reflects (resume_from)."""

    cursor: str
    task: TaskView
