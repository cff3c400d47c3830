"""Fire times of every trigger kind (projections/triggers.py), across DST changes.

DST changes used (2026): Europe/Berlin springs forward on 29 March at 02:00 CET (to 03:00
CEST) and falls back on 25 October at 03:00 CEST (to 02:00 CET); America/New_York springs
forward on 8 March at 02:00 EST and falls back on 1 November at 02:00 EDT.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobledger.projections.triggers import (
    InvalidTrigger,
    check_trigger,
    fire_times,
    jitter_delay,
    localize,
    next_fire,
    zone,
)
from jobledger.schemas.schedules import (
    CronTrigger,
    DateTrigger,
    IntervalTrigger,
    ManualTrigger,
    Trigger,
)

BERLIN, NEW_YORK = "Europe/Berlin", "America/New_York"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(moments: list[datetime], tz: str) -> list[str]:
    """Wall times with their UTC offset, as a reader checks them against a calendar."""
    return [m.astimezone(zone(tz)).strftime("%m-%d %H:%M:%S%z") for m in moments]


def fires(trigger: Trigger, tz: str, after: datetime, n: int,
          defined_at: datetime | None = None) -> list[str]:
    out: list[datetime] = []
    for _ in range(n):
        found = next_fire(trigger, zone(tz), after, defined_at or after)
        if found is None:
            break
        out.append(found)
        after = found
    return local(out, tz)


# -- interval -----------------------------------------------------------------------------


def test_an_interval_without_start_date_first_fires_one_interval_after_definition() -> None:
    defined = utc(2026, 1, 1, 10, 0, 0)
    assert fires(IntervalTrigger(minutes=1, seconds=30), "UTC", defined, 3) == [
        "01-01 10:01:30+0000", "01-01 10:03:00+0000", "01-01 10:04:30+0000"]


def test_an_interval_counts_from_its_start_date_and_stops_after_its_end_date() -> None:
    trigger = IntervalTrigger(hours=6, start_date=utc(2026, 1, 1, 3), end_date=utc(2026, 1, 2, 3))
    assert fires(trigger, "UTC", utc(2025, 12, 1), 10) == [
        "01-01 03:00:00+0000", "01-01 09:00:00+0000", "01-01 15:00:00+0000",
        "01-01 21:00:00+0000", "01-02 03:00:00+0000"]
    # Asked later, it goes on from the same grid, not from the time it was asked.
    assert fires(trigger, "UTC", utc(2026, 1, 1, 10, 30), 1) == ["01-01 15:00:00+0000"]


@pytest.mark.parametrize(("tz", "start", "expected"), [
    (BERLIN, utc(2026, 3, 27, 8), ["03-27 09:00:00+0100", "03-28 09:00:00+0100",
                                    "03-29 09:00:00+0200", "03-30 09:00:00+0200"]),
    (BERLIN, utc(2026, 10, 23, 7), ["10-23 09:00:00+0200", "10-24 09:00:00+0200",
                                     "10-25 09:00:00+0100", "10-26 09:00:00+0100"]),
    (NEW_YORK, utc(2026, 3, 6, 14), ["03-06 09:00:00-0500", "03-07 09:00:00-0500",
                                      "03-08 09:00:00-0400", "03-09 09:00:00-0400"]),
    (NEW_YORK, utc(2026, 10, 30, 13), ["10-30 09:00:00-0400", "10-31 09:00:00-0400",
                                        "11-01 09:00:00-0500", "11-02 09:00:00-0500"]),
])
def test_a_whole_day_interval_keeps_its_wall_time_across_dst(
    tz: str, start: datetime, expected: list[str],
) -> None:
    trigger = IntervalTrigger(days=1, start_date=start)
    assert fires(trigger, tz, start - timedelta(seconds=1), 4) == expected


def test_an_hours_interval_is_elapsed_time_across_dst() -> None:
    trigger = IntervalTrigger(hours=24, start_date=utc(2026, 3, 28, 8))
    assert fires(trigger, BERLIN, utc(2026, 3, 28), 3) == [
        "03-28 09:00:00+0100", "03-29 10:00:00+0200", "03-30 10:00:00+0200"]
    hourly = IntervalTrigger(hours=1, start_date=utc(2026, 10, 24, 23))
    assert fires(hourly, BERLIN, utc(2026, 10, 24, 23), 4) == [
        "10-25 02:00:00+0200", "10-25 02:00:00+0100", "10-25 03:00:00+0100", "10-25 04:00:00+0100"]


def test_a_daily_interval_at_a_skipped_wall_time_fires_at_the_change() -> None:
    # 02:30 Berlin does not exist on 29 March: that day it fires when the clock jumps.
    start = localize(datetime(2026, 3, 28, 2, 30), zone(BERLIN))
    trigger = IntervalTrigger(days=1, start_date=start)
    assert fires(trigger, BERLIN, start - timedelta(seconds=1), 3) == [
        "03-28 02:30:00+0100", "03-29 03:00:00+0200", "03-30 02:30:00+0200"]


# -- cron: expressions and fields -----------------------------------------------------------


def test_a_five_field_expression_fires_at_second_zero() -> None:
    assert fires(CronTrigger(expression="*/5 * * * *"), "UTC", utc(2026, 1, 1, 10, 2, 7), 2) == [
        "01-01 10:05:00+0000", "01-01 10:10:00+0000"]


def test_a_six_field_expression_has_seconds_first() -> None:
    assert fires(CronTrigger(expression="0 0 9 * * *"), "UTC", utc(2026, 1, 1, 10), 2) == [
        "01-02 09:00:00+0000", "01-03 09:00:00+0000"]
    assert fires(CronTrigger(expression="*/20 * * * * *"), "UTC", utc(2026, 1, 1, 10), 3) == [
        "01-01 10:00:20+0000", "01-01 10:00:40+0000", "01-01 10:01:00+0000"]


def test_fields_left_out_default_as_in_apscheduler() -> None:
    # Less significant than the last one given: their minimum; more significant: every.
    assert fires(CronTrigger(hour="2", minute="30"), "UTC", utc(2026, 1, 1), 2) == [
        "01-01 02:30:00+0000", "01-02 02:30:00+0000"]
    weekdays = CronTrigger(day_of_week="mon-fri", hour="8")  # 2 January 2026 is a Friday
    assert fires(weekdays, "UTC", utc(2026, 1, 2, 9), 2) == [
        "01-05 08:00:00+0000", "01-06 08:00:00+0000"]


def test_fields_and_day_with_day_of_week_while_an_expression_ors_them() -> None:
    first_monday = CronTrigger(day="1-7", day_of_week="mon", hour="9")
    assert fires(first_monday, "UTC", utc(2026, 1, 1), 2) == [
        "01-05 09:00:00+0000", "02-02 09:00:00+0000"]
    either = CronTrigger(expression="0 9 1-7 * mon")
    assert fires(either, "UTC", utc(2026, 1, 1), 3) == [
        "01-01 09:00:00+0000", "01-02 09:00:00+0000", "01-03 09:00:00+0000"]


def test_cron_respects_start_and_end_date_and_its_timezone() -> None:
    trigger = CronTrigger(expression="0 8 * * *", start_date=utc(2026, 1, 3),
                          end_date=utc(2026, 1, 5, 12))
    assert fires(trigger, BERLIN, utc(2026, 1, 1), 5) == [
        "01-03 08:00:00+0100", "01-04 08:00:00+0100", "01-05 08:00:00+0100"]


# -- cron across DST: Debian cron's rules ---------------------------------------------------


@pytest.mark.parametrize(("tz", "expression", "after", "expected"), [
    # Spring forward: a fixed-time job due in the skipped hour runs at the change.
    (BERLIN, "30 2 * * *", utc(2026, 3, 27, 12),
     ["03-28 02:30:00+0100", "03-29 03:00:00+0200", "03-30 02:30:00+0200"]),
    (NEW_YORK, "30 2 * * *", utc(2026, 3, 6, 12),
     ["03-07 02:30:00-0500", "03-08 03:00:00-0400", "03-09 02:30:00-0400"]),
    # Fall back: a fixed-time job due in the repeated hour runs once, the first time.
    (BERLIN, "30 2 * * *", utc(2026, 10, 23, 12),
     ["10-24 02:30:00+0200", "10-25 02:30:00+0200", "10-26 02:30:00+0100"]),
    (NEW_YORK, "30 1 * * *", utc(2026, 10, 30, 12),
     ["10-31 01:30:00-0400", "11-01 01:30:00-0400", "11-02 01:30:00-0500"]),
    # A daily job outside the changed hour keeps its wall time.
    (NEW_YORK, "0 9 * * *", utc(2026, 3, 6, 15),
     ["03-07 09:00:00-0500", "03-08 09:00:00-0400", "03-09 09:00:00-0400"]),
])
def test_fixed_time_cron_across_dst(tz: str, expression: str, after: datetime,
                                    expected: list[str]) -> None:
    assert fires(CronTrigger(expression=expression), tz, after, 3) == expected


def test_wildcard_cron_skips_the_skipped_hour_and_repeats_the_repeated_one() -> None:
    half_hourly = CronTrigger(expression="*/30 * * * *")
    assert fires(half_hourly, BERLIN, utc(2026, 3, 29, 0, 10), 3) == [
        "03-29 01:30:00+0100", "03-29 03:00:00+0200", "03-29 03:30:00+0200"]
    assert fires(half_hourly, BERLIN, utc(2026, 10, 24, 23, 10), 6) == [
        "10-25 01:30:00+0200", "10-25 02:00:00+0200", "10-25 02:30:00+0200",
        "10-25 02:00:00+0100", "10-25 02:30:00+0100", "10-25 03:00:00+0100"]
    hourly = CronTrigger(expression="0 * * * *")
    assert fires(hourly, NEW_YORK, utc(2026, 11, 1, 4, 30), 3) == [
        "11-01 01:00:00-0400", "11-01 01:00:00-0500", "11-01 02:00:00-0500"]


def test_a_next_fire_asked_inside_the_repeated_hour_finds_the_second_pass() -> None:
    # 02:45 CEST, the first pass: the next quarter hour is 02:00 CET, an hour later.
    after = utc(2026, 10, 25, 0, 45)
    assert fires(CronTrigger(expression="*/15 * * * *"), BERLIN, after, 2) == [
        "10-25 02:00:00+0100", "10-25 02:15:00+0100"]
    assert fires(CronTrigger(expression="15 2 * * *"), BERLIN, after, 1) == ["10-26 02:15:00+0100"]


# -- date, manual -------------------------------------------------------------------------


def test_a_date_trigger_fires_once_and_a_manual_one_never() -> None:
    trigger = DateTrigger(run_date=utc(2026, 2, 1, 12))
    assert fires(trigger, "UTC", utc(2026, 1, 1), 3) == ["02-01 12:00:00+0000"]
    assert next_fire(ManualTrigger(), zone("UTC"), utc(2026, 1, 1), utc(2026, 1, 1)) is None


def test_a_naive_time_is_a_wall_time_of_the_schedules_timezone() -> None:
    assert localize(datetime(2026, 7, 1, 9), zone(BERLIN)) == utc(2026, 7, 1, 7)
    assert localize(datetime(2026, 10, 25, 2, 30), zone(BERLIN)) == utc(2026, 10, 25, 0, 30)


def test_fire_times_lists_every_time_in_a_window() -> None:
    times = list(fire_times(IntervalTrigger(minutes=10), zone("UTC"), utc(2026, 1, 1),
                            utc(2026, 1, 1, 0, 30), utc(2026, 1, 1)))
    assert times == [utc(2026, 1, 1, 0, 10), utc(2026, 1, 1, 0, 20), utc(2026, 1, 1, 0, 30)]


def test_jitter_is_the_same_for_the_same_fire_and_within_bounds() -> None:
    delays = {jitter_delay("s1", utc(2026, 1, 1, 0, m), 30) for m in range(40)}
    assert all(timedelta(0) <= d < timedelta(seconds=30) for d in delays)
    assert len(delays) > 30  # spread, not constant
    assert jitter_delay("s1", utc(2026, 1, 1), 30) == jitter_delay("s1", utc(2026, 1, 1), 30)
    assert jitter_delay("s1", utc(2026, 1, 1), 0) == timedelta(0)


# -- validation: each error names its field -----------------------------------------------


@pytest.mark.parametrize(("trigger", "timezone", "field", "message"), [
    (IntervalTrigger(), "UTC", "seconds", "needs weeks, days, hours, minutes or seconds"),
    (CronTrigger(expression="61 * * * *"), "UTC", "expression", "out of range"),
    (CronTrigger(expression="* * *"), "UTC", "expression", "has 3"),
    (CronTrigger(expression="0 0 9 * * * *"), "UTC", "expression", "has 7"),
    (CronTrigger(expression="0 * * * *", hour="3"), "UTC", "expression", "not both"),
    (CronTrigger(hour="25"), "UTC", "hour", "out of range"),
    (CronTrigger(minute="x"), "UTC", "minute", "unrecognised"),
    (CronTrigger(day_of_week="1-5"), "UTC", "day_of_week", "takes names"),
    (CronTrigger(day="30", month="2"), "UTC", "day", "never matches"),
    (DateTrigger(run_date=utc(2020, 1, 1)), "UTC", "run_date", "not in the future"),
    (IntervalTrigger(minutes=1, start_date=utc(2026, 2, 1), end_date=utc(2026, 1, 1)), "UTC",
     "end_date", "before start_date"),
    (ManualTrigger(), "Mars/Olympus", "timezone", "unknown timezone"),
])
def test_a_trigger_that_cannot_fire_is_refused_naming_the_field(
    trigger: Trigger, timezone: str, field: str, message: str,
) -> None:
    with pytest.raises(InvalidTrigger, match=message) as error:
        check_trigger(trigger, timezone, now=utc(2026, 1, 1))
    assert error.value.field == field


def test_fire_times_are_whole_milliseconds_so_none_repeats() -> None:
    # A start_date with microseconds: each fire is its millisecond, and the next one asked
    # after that millisecond is the next interval, not the same fire again.
    start = utc(2026, 1, 1, 0, 0, 0).replace(microsecond=222_444)
    trigger = IntervalTrigger(minutes=1, start_date=start)
    first = next_fire(trigger, zone("UTC"), utc(2025, 12, 31), start)
    assert first == start.replace(microsecond=222_000)
    assert next_fire(trigger, zone("UTC"), first, start) == first + timedelta(minutes=1)  # type: ignore[operator]
