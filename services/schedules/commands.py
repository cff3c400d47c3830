"""The write side of schedules, shared by the REST API, the CLI (through it) and Python code:
validate a request into a definition, append the event, wait until the read model shows it.

Errors carry the API's status and code (APScheduler's names, as the seed API has them):
INVALID_TRIGGER (400) for a trigger or timezone that cannot fire, INVALID_ARGUMENT (400)
for any other bad field, JOB_EXISTS (409), JOB_NOT_FOUND (404).
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Any

import msgspec
from msgspec import UNSET

from jobledger.projections.queries import Queries
from jobledger.projections.schedules import manual_key
from jobledger.projections.triggers import InvalidTrigger, check_trigger, localize, zone
from jobledger.schemas import (
    Actor,
    Event,
    JobEnqueued,
    ScheduleDefined,
    ScheduleFired,
    SchedulePaused,
    ScheduleRemoved,
    ScheduleResumed,
    ScheduleStatus,
    ScheduleUpdated,
    uuid7,
)
from jobledger.schemas.api import DEFAULT_MAX_PAYLOAD_DEPTH
from jobledger.schemas.common import END_YEAR, FIRST_YEAR
from jobledger.schemas.schedules import (
    CRON_FIELDS,
    DEFAULT_MIN_INTERVAL_SECONDS,
    TRIGGER_FIELDS,
    TRIGGER_TYPES,
    CronTrigger,
    DateTrigger,
    IntervalTrigger,
    ManualTrigger,
    ScheduleDefinition,
    ScheduleRequest,
    ScheduleView,
    Trigger,
)
from jobledger.services.runtime.clock import Clock
from jobledger.services.runtime.projector import Projector
from jobledger.services.write.producer import job_id_for_key, payload_problem, too_deep_to_decode
from jobledger.services.write.publisher import Publisher
from jobledger.services.write.task_types import TaskTypes
from jobledger.services.write.whole_numbers import decode_request

VISIBLE_WAIT_SECONDS = 5.0  # how long a write waits for the read model to show it
_decoder = msgspec.json.Decoder(ScheduleRequest)
_PATH = re.compile(r"at `\$\.(\w+)")
_TRIGGER_INPUTS = {"trigger", "timezone", *(f for fs in TRIGGER_FIELDS.values() for f in fs)}
_TRIGGER_CLASS: dict[str, type[Trigger]] = {
    "interval": IntervalTrigger, "cron": CronTrigger, "date": DateTrigger, "manual": ManualTrigger,
}
_JOB_FIELDS = ("name", "task_type", "payload", "priority", "queue", "timeout_seconds",
               "max_retries", "misfire_policy", "misfire_grace_time", "max_instances", "jitter")


class ScheduleError(Exception):
    """A schedule request that cannot be carried out; status and code are the API's."""

    status = 400
    code = "INVALID_ARGUMENT"

    def __init__(self, message: str, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.field = field
        if code is not None:
            self.code = code


class InvalidSchedule(ScheduleError):
    pass


class InvalidScheduleTrigger(ScheduleError):
    code = "INVALID_TRIGGER"


class ScheduleExists(ScheduleError):
    status, code = 409, "JOB_EXISTS"


class ScheduleNotFound(ScheduleError):
    status, code = 404, "JOB_NOT_FOUND"


# -- requests into definitions ------------------------------------------------------------

def parse_request(body: bytes, max_depth: int = DEFAULT_MAX_PAYLOAD_DEPTH) -> ScheduleRequest:
    """The request body; a bad field raises INVALID_TRIGGER or INVALID_ARGUMENT naming it,
    a payload nested deeper than max_depth PAYLOAD_TOO_DEEP, one that is not UTF-8 JSON
    MALFORMED_JSON (as for a task's payload)."""
    try:
        request = decode_request(_decoder, ScheduleRequest, body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        match = _PATH.search(str(exc))
        field = match.group(1) if match else None
        unknown = re.search(r"unknown field `(\w+)`", str(exc))
        field = field or (unknown.group(1) if unknown else None)
        kind = InvalidScheduleTrigger if field in _TRIGGER_INPUTS else InvalidSchedule
        raise kind(str(exc), field) from None
    except RecursionError:
        too_deep = too_deep_to_decode("payload", max_depth)
        raise InvalidSchedule(str(too_deep), too_deep.field, too_deep.code) from None
    problem = None if request.payload is UNSET else payload_problem(request.payload, max_depth)
    if problem is not None:
        raise InvalidSchedule(problem[1], "payload", problem[0])
    return request


def definition_of(request: ScheduleRequest, base: ScheduleDefinition | None,
                  now: datetime, min_interval: float = 0.0) -> ScheduleDefinition:
    """The definition a POST (base None) or a PUT (base: the current one) asks for. An
    interval trigger it changes must be at least min_interval seconds."""
    given = {f: getattr(request, f) for f in request.__struct_fields__
             if getattr(request, f) is not UNSET}
    if base is None:
        for required in ("id", "task_type", "trigger"):
            if required not in given:
                kind = InvalidScheduleTrigger if required == "trigger" else InvalidSchedule
                raise kind(f"{required} is required", required)
    timezone = given.get("timezone", base.timezone if base else "UTC")
    try:
        tz = zone(timezone)
        trigger = _trigger_of(given, base.trigger if base else None, tz)
        if base is None or (trigger, timezone) != (base.trigger, base.timezone):
            check_trigger(trigger, timezone, now, min_interval)
    except InvalidTrigger as exc:
        raise InvalidScheduleTrigger(str(exc), exc.field) from None
    fields: dict[str, Any] = msgspec.structs.asdict(base) if base else {"name": given["id"]}
    fields.update({f: given[f] for f in _JOB_FIELDS if f in given})
    fields.update(trigger=trigger, timezone=timezone)
    return ScheduleDefinition(**fields)


def _trigger_of(given: dict[str, Any], base: Trigger | None, tz: Any) -> Trigger:
    """A trigger of the given type from the given fields, or the base trigger with the
    given fields changed (a PUT without `trigger`)."""
    kind = given.get("trigger") or (type(base).__struct_config__.tag if base else None)
    assert kind in TRIGGER_TYPES
    fields: dict[str, Any] = {}
    if "trigger" not in given and base is not None:
        fields = {k: v for k, v in msgspec.structs.asdict(base).items()}
    for name in _TRIGGER_INPUTS - {"trigger", "timezone"}:
        if name not in given:
            continue
        if name not in TRIGGER_FIELDS[kind]:
            raise InvalidTrigger(f"{name} is not a field of a {kind} trigger (its fields: "
                                 f"{', '.join(TRIGGER_FIELDS[kind]) or 'none'})", name)
        fields[name] = _trigger_value(name, given[name], tz)
    if kind == "date" and fields.get("run_date") is None:
        raise InvalidTrigger("a date trigger needs run_date", "run_date")
    return _TRIGGER_CLASS[kind](**fields)


def _trigger_value(name: str, value: Any, tz: Any) -> Any:
    """Cron fields as strings (APScheduler takes 2 or "2"); naive times as wall times of
    the schedule's timezone."""
    if isinstance(value, datetime):
        if not FIRST_YEAR <= value.year < END_YEAR:  # as written: the document says so
            raise InvalidTrigger(f"{name} {value.isoformat()} is outside the years a schedule "
                                 f"can fire in ({FIRST_YEAR} to {END_YEAR - 1})", name)
        return localize(value, tz)
    if name in CRON_FIELDS and isinstance(value, int):
        return str(value)
    return value


# -- commands -----------------------------------------------------------------------------

class ScheduleCommands:
    def __init__(self, publisher: Publisher, projector: Projector, queries: Queries, clock: Clock,
                 task_types: TaskTypes, min_interval: float = DEFAULT_MIN_INTERVAL_SECONDS):
        self.publisher = publisher
        self.projector = projector
        self.queries = queries
        self.clock = clock
        self.task_types = task_types  # a schedule of an unknown type would fire failing jobs
        self.min_interval = min_interval  # seconds; a shorter interval trigger is refused

    async def view(self, schedule_id: str) -> ScheduleView:
        views = await self.queries.schedules(schedule_id)
        if not views:
            raise ScheduleNotFound(f"no schedule {schedule_id!r}", "id")
        return views[0]

    async def _current(self, schedule_id: str) -> ScheduleDefinition:
        state = await self.queries.schedule_state(schedule_id)
        if state is None or state.status == ScheduleStatus.REMOVED:
            raise ScheduleNotFound(f"no schedule {schedule_id!r}", "id")
        return state.definition

    async def define(self, request: ScheduleRequest, actor: Actor | None = None,
                     request_id: str | None = None) -> ScheduleView:
        definition = definition_of(request, None, self.clock.now(), self.min_interval)
        await self.task_types.require(definition.task_type)
        schedule_id = str(request.id)
        if await self.queries.schedules(schedule_id):
            raise ScheduleExists(f"schedule {schedule_id!r} already exists", "id")
        defined = ScheduleDefined(schedule_id=schedule_id, definition=definition)
        position = await self._append(defined, schedule_id, actor, request_id)
        state = await self.queries.schedule_state(schedule_id)
        if state is not None and (state.partition, state.defined_offset) != position:
            raise ScheduleExists(f"schedule {schedule_id!r} already exists", "id")  # lost a race
        return await self.view(schedule_id)

    async def update(self, schedule_id: str, request: ScheduleRequest,
                     actor: Actor | None = None, request_id: str | None = None) -> ScheduleView:
        current = await self._current(schedule_id)  # first: no such schedule is a 404
        if request.id is not UNSET:
            raise InvalidSchedule(f"id {request.id!r} in the body: the path names the schedule "
                                  f"({schedule_id!r}), and an id cannot change; leave it out",
                                  "id")
        definition = definition_of(request, current, self.clock.now(), self.min_interval)
        if definition.task_type != current.task_type:
            await self.task_types.require(definition.task_type)
        if definition != current:
            await self._append(ScheduleUpdated(schedule_id=schedule_id, definition=definition),
                               schedule_id, actor, request_id)
        return await self.view(schedule_id)

    async def pause(self, schedule_id: str, actor: Actor | None = None,
                    request_id: str | None = None) -> ScheduleView:
        await self._current(schedule_id)
        await self._append(SchedulePaused(schedule_id=schedule_id), schedule_id, actor, request_id)
        return await self.view(schedule_id)

    async def resume(self, schedule_id: str, actor: Actor | None = None,
                    request_id: str | None = None) -> ScheduleView:
        await self._current(schedule_id)
        await self._append(ScheduleResumed(schedule_id=schedule_id), schedule_id, actor, request_id)
        return await self.view(schedule_id)

    async def remove(self, schedule_id: str, actor: Actor | None = None,
                     request_id: str | None = None) -> None:
        await self._current(schedule_id)
        await self._append(ScheduleRemoved(schedule_id=schedule_id), schedule_id, actor,
                           request_id)

    async def trigger(self, schedule_id: str, actor: Actor | None = None) -> str:
        """Run the schedule's job now (paused or not, whatever max_instances says); the
        job's id, once the read models show both the job and the fire: a GET of the task
        right after finds it, as after POST /api/v1/tasks. ScheduleFired(manual) follows
        once the job is durable."""
        d = await self._current(schedule_id)
        job_id = job_id_for_key(key := manual_key(schedule_id, uuid7()))
        job = JobEnqueued(
            job_id=job_id, task_type=d.task_type, queue=d.queue, payload=d.payload,
            priority=d.priority, timeout_seconds=d.timeout_seconds, max_retries=d.max_retries,
            idempotency_key=key,
        )
        partition, offset = await self.publisher.publish(job, job_id, actor=actor,
                                                         causation_id=key, correlation_id=key)
        fired = ScheduleFired(schedule_id=schedule_id, fire_time=self.clock.now(), job_id=job_id,
                              manual=True)
        await self._append(fired, schedule_id, actor, key)
        await self._visible("jobs", partition, offset)
        return job_id

    async def _append(self, event: Event, schedule_id: str, actor: Actor | None,
                      cause: str | None = None) -> tuple[int, int]:
        """Append once durable, then wait (bounded) until the read model shows it. cause:
        the request that asked for it, or the key of the fire it records (its cause and
        chain)."""
        partition, offset = await self.publisher.publish(event, schedule_id, actor=actor,
                                                         causation_id=cause,
                                                         correlation_id=cause)
        await self._visible("schedules", partition, offset)
        return partition, offset

    async def _visible(self, model: str, partition: int, offset: int) -> None:
        """Wait until the model shows the record, or VISIBLE_WAIT_SECONDS have passed (the
        write is durable either way: a slow projection only delays its being seen)."""
        try:
            await asyncio.wait_for(self.projector.wait_for(model, partition, offset),
                                   VISIBLE_WAIT_SECONDS)
        except TimeoutError:
            pass
