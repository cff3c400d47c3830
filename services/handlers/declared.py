"""Schedules declared in code, next to their handler:

    from jobledger.services.handlers.app import App, cron, interval

    app = App()

    @app.job("expire_servers", schedule=cron("0 * * * *"))
    async def expire_servers(ctx: JobContext, payload: dict) -> None: ...

    @app.job("send_emails", schedule=interval(minutes=5, payload={"batch": 100}))
    async def send_emails(ctx: JobContext, payload: dict) -> None: ...

The node defines each one when it starts if it is missing (or was removed), and updates it
if its definition changed; an unchanged one appends nothing, so restarts add no events.
A bad trigger fails at import time with InvalidTrigger, naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from jobledger.projections.triggers import check_trigger, localize, zone
from jobledger.schemas.schedules import (
    CronTrigger,
    DateTrigger,
    IntervalTrigger,
    ManualTrigger,
    ScheduleDefinition,
    ScheduleId,
    Trigger,
)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ScheduleDefinition)


@dataclass(frozen=True)
class Declared:
    """A trigger and the options of the schedule; the handler gives the task type."""

    trigger: Trigger
    id: str | None = None  # default: the task type
    name: str | None = None  # default: the id
    timezone: str = "UTC"
    options: dict[str, Any] = field(default_factory=dict)  # job template and firing options

    def definition(self, task_type: str) -> ScheduleDefinition:
        """The definition, validated as the API validates one (a bad option raises
        ValueError naming it)."""
        body = {"name": self.name or self.id or task_type, "task_type": task_type,
                "trigger": self.trigger, "timezone": self.timezone, **self.options}
        try:
            return _decoder.decode(_encoder.encode(body))
        except msgspec.ValidationError as exc:
            raise ValueError(f"schedule of {task_type!r}: {exc}") from None


_OPTIONS = ("payload", "priority", "queue", "timeout_seconds", "max_retries", "misfire_policy",
            "misfire_grace_time", "max_instances", "jitter")


def _declare(trigger: Trigger, id: str | None, name: str | None, timezone: str,
             options: dict[str, Any]) -> Declared:
    unknown = set(options) - set(_OPTIONS)
    if unknown:
        raise TypeError(f"unknown schedule option(s): {', '.join(sorted(unknown))}")
    check_trigger(trigger, timezone)
    return Declared(trigger, id, name, timezone, options)


def _aware(moment: datetime | None, timezone: str) -> datetime | None:
    return None if moment is None else localize(moment, zone(timezone))


def cron(expression: str | None = None, *, second: str | int | None = None,
         minute: str | int | None = None, hour: str | int | None = None,
         day: str | int | None = None, month: str | int | None = None,
         day_of_week: str | None = None, start_date: datetime | None = None,
         end_date: datetime | None = None, timezone: str = "UTC", id: str | None = None,
         name: str | None = None, **options: Any) -> Declared:
    """A cron schedule: an expression ("0 * * * *", or 6 fields with seconds first) or
    APScheduler-style fields (hour=8, day_of_week="mon-fri")."""
    fields = {k: None if v is None else str(v) for k, v in dict(
        second=second, minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week,
    ).items()}
    zone(timezone)
    trigger = CronTrigger(expression=expression, **fields,
                          start_date=_aware(start_date, timezone),
                          end_date=_aware(end_date, timezone))
    return _declare(trigger, id, name, timezone, options)


def interval(*, weeks: int = 0, days: int = 0, hours: int = 0, minutes: int = 0,
             seconds: float = 0, start_date: datetime | None = None,
             end_date: datetime | None = None, timezone: str = "UTC", id: str | None = None,
             name: str | None = None, **options: Any) -> Declared:
    """Every so long; the first fire is start_date, else one interval after definition."""
    zone(timezone)
    trigger = IntervalTrigger(weeks=weeks, days=days, hours=hours, minutes=minutes,
                              seconds=seconds, start_date=_aware(start_date, timezone),
                              end_date=_aware(end_date, timezone))
    return _declare(trigger, id, name, timezone, options)


def date(run_date: datetime, *, timezone: str = "UTC", id: str | None = None,
         name: str | None = None, **options: Any) -> Declared:
    """Once, at run_date (a naive run_date is a wall time in `timezone`)."""
    zone(timezone)
    trigger = DateTrigger(run_date=localize(run_date, zone(timezone)))
    return _declare(trigger, id, name, timezone, options)


def manual(*, id: str | None = None, name: str | None = None, **options: Any) -> Declared:
    """Only when triggered (POST /api/v1/schedules/{id}/trigger, `jobledger schedules trigger`)."""
    return _declare(ManualTrigger(), id, name, "UTC", options)


def check_schedule_id(schedule_id: str) -> None:
    """ValueError unless schedule_id is a valid id (it is part of a URL path)."""
    try:
        msgspec.convert(schedule_id, ScheduleId)
    except msgspec.ValidationError:
        raise ValueError(
            f"schedule id {schedule_id!r} must be 1-200 letters, digits and _ . : @ -, "
            "starting with a letter or digit (give id=... to the schedule)") from None
