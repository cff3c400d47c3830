"""When a trigger fires: pure functions of the trigger, its timezone and a time.

Used by the schedules reducer (next_run_time), the scheduler (what is due) and validation.
No clock here: every time comes in as an argument.

Cron expressions are parsed by croniter and evaluated on naive *wall times* of the
schedule's timezone; this module alone maps wall times to instants, with the DST rules of
Debian's (Vixie) cron, so that they are explicit and tested:

- A wall time skipped by a spring-forward change: a fixed-time job (no `*` at the start of
  its minute or hour field) runs at the instant of the change; a wildcard job does not run
  for the skipped wall times.
- A wall time that occurs twice in a fall-back change: a fixed-time job runs once, at the
  first occurrence; a wildcard job runs at both (it follows the clock on the wall).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from jobledger.schemas.schedules import (
    CRON_FIELDS,
    CronTrigger,
    DateTrigger,
    IntervalTrigger,
    ManualTrigger,
    Trigger,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_CRON_STEPS = 100_000  # wall times looked at for one next fire: a bound, never reached
_DST_WINDOW = timedelta(hours=4)  # longer than any DST shift
# APScheduler's defaults for fields left out of the field form: fields less significant
# than the least significant one given start at their minimum, more significant ones are *.
_FIELD_MINIMUM = {"second": "0", "minute": "0", "hour": "0", "day": "1", "month": "1",
                  "day_of_week": "*"}
_SIGNIFICANCE = ("month", "day", "day_of_week", "hour", "minute", "second")


class InvalidTrigger(ValueError):
    """A trigger or timezone that cannot fire as given; `field` names the input at fault."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


# -- timezones ----------------------------------------------------------------------------

@functools.lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The IANA timezone of that name; InvalidTrigger naming `timezone` if there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidTrigger(f"unknown timezone {name!r}: give an IANA name such as "
                             "'Europe/Berlin' or 'UTC'", "timezone") from None


def localize(moment: datetime, tz: ZoneInfo) -> datetime:
    """An aware UTC datetime: a naive one is a wall time in tz (APScheduler's reading)."""
    if moment.tzinfo is None:
        return _instants(moment, tz, fixed=True)[0]
    return moment.astimezone(UTC)


# -- next fire ----------------------------------------------------------------------------

def next_fire(
    trigger: Trigger, tz: ZoneInfo, after: datetime, defined_at: datetime
) -> datetime | None:
    """The first fire time in a later millisecond than `after` (aware, UTC), floored to
    the millisecond, or None if there is none. Fire times are identified by their Unix
    millisecond (fire_after, idempotency keys), so a start_date with microseconds must not
    yield the same fire twice. `defined_at` (when the definition took effect) anchors an
    interval without start_date."""
    after = after.replace(microsecond=after.microsecond // 1000 * 1000 + 999)
    found = _next_fire(trigger, tz, after, defined_at)
    return None if found is None else found.replace(microsecond=found.microsecond // 1000 * 1000)


def _next_fire(
    trigger: Trigger, tz: ZoneInfo, after: datetime, defined_at: datetime
) -> datetime | None:
    found: datetime | None
    match trigger:
        case IntervalTrigger():
            found = _next_interval(trigger, tz, after, defined_at)
        case CronTrigger():
            found = _next_cron(trigger, tz, after)
        case DateTrigger():
            found = trigger.run_date if trigger.run_date > after else None
        case ManualTrigger():
            return None
    end = getattr(trigger, "end_date", None)
    if found is not None and end is not None and found > end:
        return None
    return found


def fire_times(trigger: Trigger, tz: ZoneInfo, after: datetime, until: datetime,
               defined_at: datetime) -> Iterator[datetime]:
    """Every fire time in (after, until], in order."""
    while (t := next_fire(trigger, tz, after, defined_at)) is not None and t <= until:
        yield t
        after = t


def jitter_delay(schedule_id: str, fire_time: datetime, jitter: float) -> timedelta:
    """A delay in [0, jitter) s derived from the schedule and the fire time, so a scheduler
    that fires the same time again after a restart picks the same delay."""
    if jitter <= 0:
        return timedelta(0)
    seed = f"{schedule_id}:{fire_time.isoformat()}".encode()
    fraction = int.from_bytes(hashlib.sha256(seed).digest()[:8], "big") / 2**64
    return timedelta(milliseconds=int(fraction * jitter * 1000))


# -- interval -----------------------------------------------------------------------------

def _period(t: IntervalTrigger) -> timedelta:
    return timedelta(weeks=t.weeks, days=t.days, hours=t.hours, minutes=t.minutes,
                     seconds=t.seconds)


def is_calendar_interval(t: IntervalTrigger) -> bool:
    """Whole weeks/days only: the wall time stays put across DST changes."""
    return (t.weeks or t.days) > 0 and not (t.hours or t.minutes or t.seconds)


def _next_interval(
    t: IntervalTrigger, tz: ZoneInfo, after: datetime, defined_at: datetime
) -> datetime:
    period = _period(t)
    first = t.start_date if t.start_date is not None else None
    if is_calendar_interval(t):
        return _next_calendar(period.days, first, tz, after, defined_at)
    if first is None:
        first = defined_at + period
    if after < first:
        return first
    return first + period * ((after - first) // period + 1)


def _next_calendar(step_days: int, first: datetime | None, tz: ZoneInfo, after: datetime,
                   defined_at: datetime) -> datetime:
    """The next of first, first + step_days, ... counted in days on the wall of tz."""
    if first is None:
        start_wall = _wall(defined_at, tz) + timedelta(days=step_days)
    else:
        start_wall = _wall(first, tz)
    # Estimate the step from elapsed days, then walk: DST moves an instant by hours only.
    k = max(0, (_wall(after, tz) - start_wall).days // step_days - 1)
    while True:
        fire = _instants(start_wall + timedelta(days=k * step_days), tz, fixed=True)[0]
        if fire > after:
            return fire
        k += 1


# -- cron ---------------------------------------------------------------------------------

def cron_fields(t: CronTrigger) -> list[str]:
    """The six fields (second first) a cron trigger stands for."""
    if t.expression is not None:
        fields = t.expression.split()
        if len(fields) == 5:
            return ["0", *fields]
        if len(fields) == 6:
            return fields
        raise InvalidTrigger(
            f"a cron expression has 5 fields (minute hour day month day_of_week) or 6 with "
            f"seconds first; {t.expression!r} has {len(fields)}", "expression")
    given = {name: getattr(t, name) for name in CRON_FIELDS if getattr(t, name) is not None}
    out: dict[str, str] = {}
    for name in _SIGNIFICANCE:
        if name in given:
            out[name] = given.pop(name)
        else:
            out[name] = "*" if given else _FIELD_MINIMUM[name]
    return [out[name] for name in CRON_FIELDS]


def is_fixed_time(fields: list[str]) -> bool:
    """Debian cron's test: a job is fixed-time unless its minute or hour starts with '*'."""
    return not (fields[1].startswith("*") or fields[2].startswith("*"))


@functools.lru_cache(maxsize=16_384)
def _compiled(t: CronTrigger) -> tuple[str, bool, bool]:
    """(expression, day_or, fixed time). The field form ANDs day and day_of_week, as
    APScheduler does; an expression ORs them, as cron does."""
    fields = cron_fields(t)
    return " ".join(fields), t.expression is not None, is_fixed_time(fields)


def check_cron(t: CronTrigger) -> None:
    """InvalidTrigger naming the field (or `expression`) that croniter cannot parse."""
    expression, day_or, _ = _compiled(t)
    if t.expression is not None:
        _parse(expression, day_or, "expression", t.expression)
        return
    dow = t.day_of_week
    if dow is not None and any(c.isdigit() for c in dow):
        raise InvalidTrigger(
            "day_of_week takes names (mon, tue, ..., sun; ranges like mon-fri): numbers mean "
            "different days in cron and in APScheduler", "day_of_week")
    for i, name in enumerate(CRON_FIELDS):
        value = getattr(t, name)
        if value is not None:
            probe = ["*"] * 6
            probe[i] = value
            _parse(" ".join(probe), day_or, name, value)
    # Each field parses alone; together they must still match some date (not 30 February).
    _parse(expression, day_or, "day", t.day or "*")


def _parse(expression: str, day_or: bool, field: str, value: str) -> None:
    try:
        croniter(expression, datetime(2000, 1, 1), day_or=day_or,
                 second_at_beginning=True).get_next(datetime)
    except (ValueError, TypeError, KeyError) as exc:  # croniter's errors are ValueErrors
        message = f"{field} {value!r} is not valid cron: {_reason(exc)}"
        raise InvalidTrigger(message, field) from None


def _reason(exc: Exception) -> str:
    """croniter's message, less the expression it rewrote (which the user never wrote)."""
    text = str(exc)
    if "failed to find next date" in text:
        return "it never matches a date"
    if "out of range" in text:
        return "a value is out of range"
    return "unrecognised syntax" if "not acceptable" in text else text


def _next_cron(t: CronTrigger, tz: ZoneInfo, after: datetime) -> datetime | None:
    """The first matching instant after `after`; see the module docstring for DST."""
    if t.start_date is not None and t.start_date > after:
        after = t.start_date - timedelta(microseconds=1)
    expression, day_or, fixed = _compiled(t)
    # An instant after `after` can have an earlier wall time only across a fall-back
    # change: start that much earlier on the wall.
    margin = max(timedelta(0), _offset(after, tz) - _offset(after + _DST_WINDOW, tz))
    walls = croniter(expression, _wall(after, tz) - margin, day_or=day_or,
                     second_at_beginning=True)
    best: datetime | None = None
    for _ in range(_MAX_CRON_STEPS):
        try:
            wall = walls.get_next(datetime)
        except CroniterBadDateError:
            return best  # no later date matches (e.g. a year-bound expression ran out)
        instants = _instants(wall, tz, fixed)
        later = [i for i in instants if i > after]
        if later and (best is None or later[0] < best):
            best = later[0]
        # Wall times grow with instants except inside a repeated hour: stop at the first
        # unambiguous wall time that cannot beat what was found.
        if (best is not None and len(instants) == 1 and instants[0] >= best
                and not _ambiguous(wall, tz)):
            return best
    return best


# -- wall times and instants --------------------------------------------------------------

def _wall(moment: datetime, tz: ZoneInfo) -> datetime:
    return moment.astimezone(tz).replace(tzinfo=None)


def _offset(moment: datetime, tz: ZoneInfo) -> timedelta:
    return moment.astimezone(tz).utcoffset() or timedelta(0)


def _ambiguous(wall: datetime, tz: ZoneInfo) -> bool:
    first, second = wall.replace(tzinfo=tz, fold=0), wall.replace(tzinfo=tz, fold=1)
    return first.utcoffset() != second.utcoffset() and _wall(first, tz) == wall


def _instants(wall: datetime, tz: ZoneInfo, fixed: bool) -> list[datetime]:
    """The instants (UTC) at which a job due at this wall time runs, by the DST rules."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first == second:
        return [first]
    if _wall(first, tz) == wall:  # it exists twice: fold 0 is the first occurrence
        return [first] if fixed else [first, second]
    # Skipped by a spring-forward change: fold 1 reads it with the offset after the
    # change (an instant before it), fold 0 with the offset before (an instant after).
    return [_change_between(second, first, tz)] if fixed else []


def _change_between(before: datetime, after: datetime, tz: ZoneInfo) -> datetime:
    """The first instant in (before, after] with after's UTC offset: the DST change."""
    target = _offset(after, tz)
    lo, hi = before, after
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if _offset(mid, tz) == target:
            hi = mid
        else:
            lo = mid
    return hi.replace(microsecond=0)


# -- validation ---------------------------------------------------------------------------

def check_trigger(trigger: Trigger, timezone: str, now: datetime | None = None,
                  min_interval: float = 0.0) -> None:
    """InvalidTrigger naming the field if the trigger cannot fire as given. With `now`,
    a date trigger must also lie after it (a run_date in the past would never run). An
    interval must be at least min_interval seconds (the API's --min-schedule-interval)."""
    zone(timezone)
    match trigger:
        case IntervalTrigger():
            period = _period(trigger)
            if period <= timedelta(0):
                raise InvalidTrigger("an interval trigger needs weeks, days, hours, minutes or "
                                     "seconds above 0", "seconds")
            if period < timedelta(seconds=min_interval):
                raise InvalidTrigger(f"an interval of {period.total_seconds():g} s is below the "
                                     f"shortest accepted, {min_interval:g} s", "seconds")
        case CronTrigger():
            if trigger.expression is not None and any(
                getattr(trigger, f) is not None for f in CRON_FIELDS
            ):
                raise InvalidTrigger("give a cron expression or the fields second, minute, hour, "
                                     "day, month, day_of_week, not both", "expression")
            check_cron(trigger)
        case DateTrigger():
            if now is not None and trigger.run_date <= now:
                raise InvalidTrigger(f"run_date {trigger.run_date.isoformat()} is not in the "
                                     "future", "run_date")
    start, end = getattr(trigger, "start_date", None), getattr(trigger, "end_date", None)
    if start is not None and end is not None and end < start:
        raise InvalidTrigger("end_date is before start_date", "end_date")
