"""Events of the schedules topic, keyed by schedule id, and the shapes of a schedule.

A schedule is event-sourced like a job: its definition, every change of it and every
firing are events; its state is a projection (projections/schedules.py). The scheduler
that owns a schedule's partition is the only one that appends ScheduleFired and
ScheduleSkipped for its timed fires (docs/schedules.md).

Tags are explicit and stable, as in schemas/jobs.py. Triggers are a tagged union of their
own, nested in the definition: {"type": "cron", "expression": "0 * * * *", ...}.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from .api import MAX_RETRIES, MAX_SECONDS, RequestSeconds
from .common import (
    END_YEAR,
    FIRST_YEAR,
    YEAR_PATTERN,
    Name,
    NonNegativeInt,
    PositiveSeconds,
    Priority,
    json_null,
)
from .lifecycle import JobStatus, ScheduleStatus

ScheduleId = Annotated[str, msgspec.Meta(
    min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$",
    description="letters, digits and _ . : @ - (it is part of a URL path)",
)]
# A date and time as the schedules API takes them: ISO 8601, with a UTC offset (an instant)
# or without one (a wall time in the schedule's timezone), in the years FIRST_YEAR to
# END_YEAR - 1. The pattern says what msgspec's decoder and those years accept, for the
# OpenAPI document (a date-time "format" would require the offset).
DATE_TIME_PATTERN = (
    f"^{YEAR_PATTERN}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))"
    "[Tt ](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:[.][0-9]+)?"
    "(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])?$"
)
WallOrInstant = Annotated[datetime, msgspec.Meta(
    description=f"ISO 8601, e.g. 2026-12-24T09:00:00 (a wall time in the schedule's timezone) "
    f"or 2026-12-24T08:00:00Z, in the years {FIRST_YEAR} to {END_YEAR - 1}",
    extra_json_schema={"pattern": DATE_TIME_PATTERN},
)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
CronField = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
# The shortest interval trigger the API accepts (`--min-schedule-interval`): a schedule
# every millisecond fired a thousand jobs a second.
DEFAULT_MIN_INTERVAL_SECONDS = 1.0


# -- triggers -------------------------------------------------------------------------------

class IntervalTrigger(msgspec.Struct, frozen=True, gc=False, tag="interval"):
    """Every weeks+days+hours+minutes+seconds. Whole weeks/days alone keep the wall time in
    the schedule's timezone across DST; any hours/minutes/seconds make it elapsed time."""

    weeks: NonNegativeInt = 0
    days: NonNegativeInt = 0
    hours: NonNegativeInt = 0
    minutes: NonNegativeInt = 0
    seconds: NonNegativeFloat = 0.0
    start_date: datetime | None = None  # the first fire; None: one interval after definition
    end_date: datetime | None = None  # no fire after it


class CronTrigger(msgspec.Struct, frozen=True, gc=False, tag="cron"):
    """Either an expression (5 fields, or 6 with seconds first) or APScheduler-style fields."""

    expression: str | None = None
    second: CronField | None = None
    minute: CronField | None = None
    hour: CronField | None = None
    day: CronField | None = None
    month: CronField | None = None
    day_of_week: CronField | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None


class DateTrigger(msgspec.Struct, frozen=True, gc=False, tag="date"):
    run_date: datetime  # fires once, at this time


class ManualTrigger(msgspec.Struct, frozen=True, gc=False, tag="manual"):
    """Never fires by itself: only POST /api/v1/schedules/{id}/trigger runs it."""


Trigger = IntervalTrigger | CronTrigger | DateTrigger | ManualTrigger
TRIGGER_TYPES = ("interval", "cron", "date", "manual")
CRON_FIELDS = ("second", "minute", "hour", "day", "month", "day_of_week")
TRIGGER_FIELDS: dict[str, tuple[str, ...]] = {
    "interval": ("weeks", "days", "hours", "minutes", "seconds", "start_date", "end_date"),
    "cron": ("expression", *CRON_FIELDS, "start_date", "end_date"),
    "date": ("run_date",),
    "manual": (),
}


class MisfirePolicy(enum.StrEnum):
    """What a scheduler does with fire times it missed by more than misfire_grace_time."""

    COALESCE = "coalesce"  # run once, for the latest missed fire time
    SKIP = "skip"  # run none of them
    RUN_ALL = "run_all"  # run every one of them


class ScheduleDefinition(msgspec.Struct, frozen=True, gc=False):
    """Everything that defines a schedule: when (trigger, timezone) and what it enqueues
    (the job template). Two definitions are the same schedule when they are equal."""

    name: Name
    task_type: Name
    trigger: Trigger
    timezone: str = "UTC"  # an IANA name
    payload: msgspec.Raw = msgspec.field(default_factory=json_null)
    priority: Priority = 128
    queue: Name = "default"
    timeout_seconds: PositiveSeconds | None = None
    max_retries: NonNegativeInt | None = None
    misfire_policy: MisfirePolicy = MisfirePolicy.COALESCE
    misfire_grace_time: NonNegativeFloat = 60.0  # seconds late a fire may be and still run
    max_instances: PositiveInt = 1  # unfinished jobs of the schedule at which a fire is skipped
    jitter: NonNegativeFloat = 0.0  # a job runs up to this many seconds after its fire time


# -- events -------------------------------------------------------------------------------

class ScheduleDefined(msgspec.Struct, frozen=True, gc=False, tag="ScheduleDefined"):
    """A new schedule (or one that was removed, defined again). A ScheduleDefined for a
    schedule that exists is a duplicate: kept in the history, ignored."""

    schedule_id: ScheduleId
    definition: ScheduleDefinition
    v: int = 1


class ScheduleUpdated(msgspec.Struct, frozen=True, gc=False, tag="ScheduleUpdated"):
    """The whole new definition (a partial PUT is merged before it is appended)."""

    schedule_id: ScheduleId
    definition: ScheduleDefinition
    v: int = 1


class SchedulePaused(msgspec.Struct, frozen=True, gc=False, tag="SchedulePaused"):
    """No timed fire until ScheduleResumed; fire times passed while paused are not run."""

    schedule_id: ScheduleId
    v: int = 1


class ScheduleResumed(msgspec.Struct, frozen=True, gc=False, tag="ScheduleResumed"):
    schedule_id: ScheduleId
    v: int = 1


class ScheduleRemoved(msgspec.Struct, frozen=True, gc=False, tag="ScheduleRemoved"):
    schedule_id: ScheduleId
    v: int = 1


class ScheduleFired(msgspec.Struct, frozen=True, gc=False, tag="ScheduleFired"):
    """The schedule enqueued job_id for fire_time. Appended only once that JobEnqueued is
    durable. A timed fire at or before the last one is a duplicate: kept, ignored."""

    schedule_id: ScheduleId
    fire_time: datetime
    job_id: str
    manual: bool = False  # POST .../trigger: does not move the timed fires on
    v: int = 1


class SkipReason(enum.StrEnum):
    MAX_INSTANCES = "max_instances"  # max_instances jobs of the schedule were unfinished
    MISFIRE = "misfire"  # missed by more than the grace time, misfire_policy skip (or run_all cap)
    COALESCED = "coalesced"  # missed, and folded into one later run (misfire_policy coalesce)


class ScheduleSkipped(msgspec.Struct, frozen=True, gc=False, tag="ScheduleSkipped"):
    """Fire times from fire_time to last_fire_time (count of them) were not run."""

    schedule_id: ScheduleId
    fire_time: datetime
    reason: SkipReason
    last_fire_time: datetime | None = None  # None: fire_time alone
    count: PositiveInt = 1
    v: int = 1


ScheduleEvent = (
    ScheduleDefined
    | ScheduleUpdated
    | SchedulePaused
    | ScheduleResumed
    | ScheduleRemoved
    | ScheduleFired
    | ScheduleSkipped
)


# -- the REST API's request body ---------------------------------------------------------

# An interval's units, each at most a century: a longer interval would never fire, and
# a far longer one overflowed Python's timedelta (a 500, found by schemathesis). The job
# template's times and retries have TaskRequest's bounds, and jitter and the grace time a
# century too, so every deadline a fire leads to stays a time the clock can represent.
_CENTURY_DAYS = MAX_SECONDS // (24 * 3600)


def _units(most: int) -> msgspec.Meta:
    return msgspec.Meta(ge=0, le=most)


class ScheduleRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """POST and PUT /api/v1/schedules: the flat body APScheduler users know. Every field
    may be left out; POST then needs id, task_type and trigger, PUT changes what is given.
    A trigger's own fields sit at the top level."""

    id: ScheduleId | UnsetType = UNSET
    name: Name | UnsetType = UNSET
    task_type: Name | UnsetType = UNSET
    payload: msgspec.Raw | UnsetType = UNSET
    priority: Priority | UnsetType = UNSET
    queue: Name | UnsetType = UNSET
    timeout_seconds: RequestSeconds | None | UnsetType = UNSET
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=MAX_RETRIES)] | None | UnsetType = UNSET
    timezone: str | UnsetType = UNSET
    trigger: Literal["interval", "cron", "date", "manual"] | UnsetType = UNSET
    weeks: Annotated[int, _units(_CENTURY_DAYS // 7)] | UnsetType = UNSET
    days: Annotated[int, _units(_CENTURY_DAYS)] | UnsetType = UNSET
    hours: Annotated[int, _units(_CENTURY_DAYS * 24)] | UnsetType = UNSET
    minutes: Annotated[int, _units(_CENTURY_DAYS * 24 * 60)] | UnsetType = UNSET
    seconds: Annotated[float, _units(_CENTURY_DAYS * 24 * 3600)] | UnsetType = UNSET
    start_date: WallOrInstant | None | UnsetType = UNSET
    end_date: WallOrInstant | None | UnsetType = UNSET
    expression: str | UnsetType = UNSET
    second: int | CronField | UnsetType = UNSET
    minute: int | CronField | UnsetType = UNSET
    hour: int | CronField | UnsetType = UNSET
    day: int | CronField | UnsetType = UNSET
    month: int | CronField | UnsetType = UNSET
    day_of_week: int | CronField | UnsetType = UNSET
    run_date: WallOrInstant | UnsetType = UNSET
    misfire_policy: MisfirePolicy | UnsetType = UNSET
    misfire_grace_time: Annotated[float, _units(MAX_SECONDS)] | UnsetType = UNSET
    max_instances: PositiveInt | UnsetType = UNSET
    jitter: Annotated[float, _units(MAX_SECONDS)] | UnsetType = UNSET


class ScheduleView(msgspec.Struct):
    """A schedule as the API shows it. Times are ISO 8601 UTC with a trailing Z."""

    id: str
    name: str
    state: ScheduleStatus  # never removed: a removed schedule is not shown
    trigger: dict[str, Any]  # {"type": ..., and the fields that are set}
    timezone: str
    next_run_time: str | None
    last_run_at: str | None
    last_fire_time: str | None
    last_status: JobStatus | None  # the status of the last job it started
    last_task_id: str | None
    is_running: bool  # a job it started is not finished yet
    task_type: str
    payload: Any  # the JSON as given: msgspec.Raw on the server, decoded by the client
    priority: int
    queue: str
    timeout_seconds: float | None
    max_retries: int | None
    misfire_policy: str
    misfire_grace_time: float
    max_instances: int
    jitter: float
    created_at: str
    updated_at: str


class Removed(msgspec.Struct):
    """DELETE /api/v1/schedules/{id}: the schedule is gone."""

    id: str
    status: ScheduleStatus = ScheduleStatus.REMOVED


class Triggered(msgspec.Struct):
    """POST /api/v1/schedules/{id}/trigger: the task its job is."""

    task_id: str
    schedule_id: str
