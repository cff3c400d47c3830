"""The event model: frozen msgspec Structs in tagged unions, their envelope and wire format."""

from .codec import UndecodableRecord, decode, encode
from .common import Actor, ActorKind, LogLevel, Progress, uuid7
from .envelope import (
    JOBS,
    LOGS,
    SCHEDULES,
    SECURITY,
    TOPICS,
    WORKERS,
    Envelope,
    Event,
    topic_of,
)
from .jobs import (
    JobCancelled,
    JobCancelRequested,
    JobDue,
    JobEnqueued,
    JobFailed,
    JobHeartbeat,
    JobLeaseExpired,
    JobLogged,
    JobPicked,
    JobRequeued,
    JobSucceeded,
    QueuePaused,
    QueueResumed,
)
from .lifecycle import JobStatus, RunStatus, ScheduleStatus, WorkerStatus
from .schedules import (
    ScheduleDefined,
    ScheduleFired,
    SchedulePaused,
    ScheduleRemoved,
    ScheduleResumed,
    ScheduleSkipped,
    ScheduleUpdated,
)
from .security import (
    KeyCreated,
    KeyRevoked,
    Permission,
    UserPermissionsChanged,
    UserRegistered,
    UserRemoved,
)
from .workers import WorkerHeartbeat, WorkerLost, WorkerStarted, WorkerStopped

__all__ = [
    "JOBS", "LOGS", "SCHEDULES", "SECURITY", "TOPICS", "WORKERS",
    "KeyCreated", "KeyRevoked", "Permission", "UserPermissionsChanged", "UserRegistered",
    "UserRemoved",
    "ScheduleDefined", "ScheduleFired", "SchedulePaused", "ScheduleRemoved", "ScheduleResumed",
    "ScheduleSkipped", "ScheduleUpdated",
    "Actor", "ActorKind", "Envelope", "Event", "JobCancelRequested", "JobCancelled",
    "JobDue", "JobEnqueued", "JobFailed", "JobHeartbeat", "JobLeaseExpired", "JobLogged",
    "JobPicked", "JobRequeued", "JobStatus", "JobSucceeded", "LogLevel", "Progress",
    "QueuePaused", "QueueResumed", "RunStatus", "ScheduleStatus", "UndecodableRecord",
    "WorkerHeartbeat", "WorkerLost", "WorkerStarted", "WorkerStatus", "WorkerStopped",
    "decode", "encode", "topic_of", "uuid7",
]
