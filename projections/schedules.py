"""The schedules reducer: a schedule's state after one more event. Pure: no clock, no I/O.

The same reducer runs in the projections (the schedules read model) and in the scheduler,
which keeps every schedule of its partitions in memory. Timed fires are searched strictly
after `fire_after`: a fire, a skip, a resume or a new trigger moves it on, so a fire time
is never decided twice and a ScheduleFired at or before it is a duplicate.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from operator import attrgetter
from typing import Any

import msgspec
from msgspec.structs import replace

from jobledger.projections.fold import fold_states
from jobledger.projections.triggers import next_fire, zone
from jobledger.schemas import (
    Envelope,
    ScheduleDefined,
    ScheduleFired,
    SchedulePaused,
    ScheduleRemoved,
    ScheduleResumed,
    ScheduleSkipped,
    ScheduleUpdated,
)
from jobledger.schemas.common import from_ms, iso_ms, to_ms
from jobledger.schemas.lifecycle import JobStatus, ScheduleStatus
from jobledger.schemas.nesting import decode_deep
from jobledger.schemas.schedules import ScheduleDefinition, ScheduleView


class ScheduleState(msgspec.Struct, frozen=True, gc=False):
    """Times are Unix milliseconds."""

    schedule_id: str
    definition: ScheduleDefinition
    status: ScheduleStatus
    created_at: int
    updated_at: int
    defined_at: int  # when the current trigger took effect: anchors an interval
    fire_after: int  # timed fires are searched strictly after this
    partition: int
    defined_offset: int  # where the ScheduleDefined of this incarnation sits
    last_fire_time: int | None = None  # the fire time of the last timed fire
    last_run_at: int | None = None  # when the last job was enqueued (timed or manual)
    last_job_id: str | None = None
    fire_count: int = 0
    skip_count: int = 0
    last_skip_reason: str | None = None


def reduce_schedule(state: ScheduleState | None, env: Envelope) -> ScheduleState | None:
    """The state after env; the same object when env changes nothing."""
    event = env.event
    now = to_ms(env.time)
    if isinstance(event, ScheduleDefined):
        if state is not None and state.status != ScheduleStatus.REMOVED:
            return state  # a duplicate definition: kept in the history, ignored
        return ScheduleState(
            schedule_id=event.schedule_id, definition=event.definition,
            status=ScheduleStatus.ACTIVE, created_at=now, updated_at=now, defined_at=now,
            fire_after=now, partition=env.partition, defined_offset=env.offset,
        )
    if state is None or state.status == ScheduleStatus.REMOVED:
        return state
    match event:
        case ScheduleUpdated():
            return _updated(state, event.definition, now)
        case SchedulePaused() if state.status == ScheduleStatus.ACTIVE:
            return replace(state, status=ScheduleStatus.PAUSED, updated_at=now)
        case ScheduleResumed() if state.status == ScheduleStatus.PAUSED:
            # Fire times that passed while paused are not run.
            return replace(state, status=ScheduleStatus.ACTIVE, updated_at=now,
                           fire_after=max(state.fire_after, now))
        case ScheduleRemoved():
            return replace(state, status=ScheduleStatus.REMOVED, updated_at=now)
        case ScheduleFired():
            return _fired(state, event, now)
        case ScheduleSkipped():
            last = to_ms(event.last_fire_time or event.fire_time)
            if last <= state.fire_after:
                return state
            return replace(state, fire_after=last, skip_count=state.skip_count + event.count,
                           last_skip_reason=event.reason)
    return state


def _updated(state: ScheduleState, new: ScheduleDefinition, now: int) -> ScheduleState:
    old = state.definition
    if new == old:
        return state
    if (new.trigger, new.timezone) != (old.trigger, old.timezone):
        # A new trigger counts from now: it has no fire times in the past to catch up on.
        return replace(state, definition=new, updated_at=now, defined_at=now,
                       fire_after=max(state.fire_after, now))
    return replace(state, definition=new, updated_at=now)


def _fired(state: ScheduleState, event: ScheduleFired, now: int) -> ScheduleState:
    common: dict[str, Any] = dict(last_run_at=now, last_job_id=event.job_id,
                                  fire_count=state.fire_count + 1)
    if event.manual:
        return replace(state, **common)  # the timed fires go on as they were
    fire_time = to_ms(event.fire_time)
    if fire_time <= state.fire_after:
        return state  # decided already (a duplicate), or before a resume or a new trigger
    return replace(state, fire_after=fire_time, last_fire_time=fire_time, **common)


def next_run_time(state: ScheduleState) -> int | None:
    """When the schedule fires next by its trigger (ms), or None: paused, removed, a
    manual trigger, or a trigger with no fire time left."""
    if state.status != ScheduleStatus.ACTIVE:
        return None
    d = state.definition
    found = next_fire(d.trigger, zone(d.timezone), from_ms(state.fire_after),
                      from_ms(state.defined_at))
    return to_ms(found) if found is not None else None


def fold_schedules(
    envs: Iterable[Envelope], states: MutableMapping[str, ScheduleState]
) -> dict[str, ScheduleState]:
    """Apply envs to `states` (updated in place); the final state of each changed one."""
    return fold_states(envs, states, reduce_schedule, attrgetter("event.schedule_id"))


# -- rows of the schedules table (column order = schema.sql) ------------------------------

_encoder = msgspec.json.Encoder()
_definition = msgspec.json.Decoder(ScheduleDefinition)


def schedule_row(s: ScheduleState) -> tuple[Any, ...]:
    """The row, with next_run_time worked out once per write (not once per event)."""
    return (
        s.schedule_id, s.definition.name, s.status, _encoder.encode(s.definition),
        s.created_at, s.updated_at, s.defined_at, s.fire_after, next_run_time(s),
        s.last_fire_time, s.last_run_at, s.last_job_id, s.fire_count, s.skip_count,
        s.last_skip_reason, s.partition, s.defined_offset,
    )


def schedule_from_row(row: tuple[Any, ...]) -> ScheduleState:
    (schedule_id, _name, status, definition, created_at, updated_at, defined_at, fire_after,
     _next, last_fire_time, last_run_at, last_job_id, fire_count, skip_count,
     last_skip_reason, partition, defined_offset) = row
    return ScheduleState(
        # decode_deep: a payload stored before the API limited nesting may be too deep for
        # msgspec's recursion (docs/reliability.md).
        schedule_id=schedule_id, definition=decode_deep(_definition, definition),
        status=ScheduleStatus(status), created_at=created_at, updated_at=updated_at,
        defined_at=defined_at, fire_after=fire_after, partition=partition,
        defined_offset=defined_offset, last_fire_time=last_fire_time, last_run_at=last_run_at,
        last_job_id=last_job_id, fire_count=fire_count, skip_count=skip_count,
        last_skip_reason=last_skip_reason,
    )


# -- the jobs a schedule enqueues -----------------------------------------------------------

KEY_PREFIX = "schedule:"


def fire_key(schedule_id: str, fire_time_ms: int) -> str:
    """The idempotency key of the job of one timed fire: firing the same time again (after
    a restart, or by a second scheduler) lands on the same job id, so it is one job."""
    return f"{KEY_PREFIX}{fire_time_ms}:{schedule_id}"


def manual_key(schedule_id: str, token: str) -> str:
    """The idempotency key of a manual run (token: unique per request)."""
    return f"{KEY_PREFIX}manual-{token}:{schedule_id}"


def schedule_of_key(key: str | None) -> str | None:
    """The schedule id in a fire_key or manual_key; None for any other key."""
    if key is None or not key.startswith(KEY_PREFIX):
        return None
    parts = key.split(":", 2)
    return parts[2] if len(parts) == 3 else None


# -- the API's view ---------------------------------------------------------------------------

def trigger_fields(definition: ScheduleDefinition) -> dict[str, Any]:
    """The trigger as {"type": ..., field: value}, leaving out fields that are not set."""
    raw = msgspec.to_builtins(definition.trigger)
    return {k: v for k, v in raw.items() if v is not None and (k == "type" or v != 0)}


def schedule_view(state: ScheduleState, next_run: int | None, last_status: JobStatus | None,
                  running: bool) -> ScheduleView:
    d = state.definition
    return ScheduleView(
        id=state.schedule_id, name=d.name, state=state.status, trigger=trigger_fields(d),
        timezone=d.timezone, next_run_time=iso_ms(next_run),
        last_run_at=iso_ms(state.last_run_at), last_fire_time=iso_ms(state.last_fire_time),
        last_status=last_status, last_task_id=state.last_job_id, is_running=running,
        task_type=d.task_type, payload=d.payload, priority=d.priority, queue=d.queue,
        timeout_seconds=d.timeout_seconds, max_retries=d.max_retries,
        misfire_policy=d.misfire_policy, misfire_grace_time=d.misfire_grace_time,
        max_instances=d.max_instances, jitter=d.jitter,
        created_at=iso_ms(state.created_at) or "", updated_at=iso_ms(state.updated_at) or "",
    )
