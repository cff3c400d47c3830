"""The envelope every event travels in, the union of all events, and which topic each lives on."""

from __future__ import annotations

from datetime import datetime

import msgspec

from .common import Actor
from .jobs import JobEvent, JobLogged, QueueEvent
from .schedules import ScheduleEvent
from .security import SecurityEvent
from .workers import WorkerEvent

Event = JobEvent | QueueEvent | WorkerEvent | ScheduleEvent | SecurityEvent

# Topics of the log. Job events are keyed by job id; queue events are written to every
# partition of the jobs topic so that each partition owner sees them in its own order.
JOBS = "jobs"
LOGS = "logs"
WORKERS = "workers"
SCHEDULES = "schedules"  # keyed by schedule id: the owner of its partition fires it
SECURITY = "security"  # keyed by key id; one partition (docs/security.md says why)
TOPICS = (JOBS, LOGS, WORKERS, SCHEDULES, SECURITY)


class Envelope(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """One record of the log: an event, who caused it and when, and the request or job it
    belongs to."""

    # Events, envelopes and reducer states are built by the hundred thousand and never form
    # reference cycles, so they opt out of the cyclic GC (gc=False): that keeps collections
    # from rescanning them, which made decoding a large batch several times slower.
    #
    # partition and offset are the record's place in the log: they are not written to the
    # wire (the log knows them) and are filled in when a record is read back.

    id: str  # a UUIDv7, unique per event
    key: str  # job id, worker id or queue name: events of one key share a partition
    time: datetime  # when the actor produced it, by the actor's clock
    actor: Actor
    event: Event
    causation_id: str | None = None  # the event that led to this one
    correlation_id: str | None = None  # shared by every event of one request or job
    trace: dict[str, str] = {}  # W3C trace context (traceparent, tracestate)
    partition: int = -1
    offset: int = -1

    @property
    def type(self) -> str:
        tag = type(self.event).__struct_config__.tag
        return tag  # type: ignore[return-value]  # msgspec says str | int; events' are str


def _topic_of_type(cls: type) -> str:
    if cls is JobLogged:
        return LOGS
    if cls in WorkerEvent.__args__:
        return WORKERS
    if cls in ScheduleEvent.__args__:
        return SCHEDULES
    if cls in SecurityEvent.__args__:
        return SECURITY
    return JOBS


# One dict lookup per event: projections check the topic of every event they apply.
TOPIC_OF_TYPE: dict[type, str] = {cls: _topic_of_type(cls) for cls in Event.__args__}


def topic_of(event: Event) -> str:
    return TOPIC_OF_TYPE[type(event)]


def event_types() -> list[type[msgspec.Struct]]:
    """Every event class, in the order of the Event union."""
    return list(Event.__args__)
