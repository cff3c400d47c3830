"""services/write/whole_numbers.py: an integer field takes a whole number however JSON
writes it (58, 58.0, 5.8e1), as JSON Schema counts it an integer (issue 18, item 10: the
schemathesis check ST202 sent `priority: 58.0`); a fraction or a string is still refused,
and a payload stays byte for byte as sent."""

from __future__ import annotations

import time

import pytest

from jobledger.services.schedules.commands import ScheduleError, parse_request
from jobledger.services.write.producer import InvalidJob, parse_batch, parse_task


@pytest.mark.parametrize("written", [b"58.0", b"5.8e1", b"580E-1", b"58.000", b"58"])
def test_an_integer_field_takes_a_whole_number_written_as_a_float(written: bytes) -> None:
    body = b'{"task_type": "t", "priority": ' + written + b', "payload": {"x": 1.0, "p": 2.0}}'
    task = parse_task(body)
    assert task.priority == 58 and type(task.priority) is int
    assert bytes(task.payload) == b'{"x": 1.0, "p": 2.0}'


def test_whole_numbers_are_taken_in_every_task_of_a_batch_and_in_a_schedule() -> None:
    batch = parse_batch(b'{"tasks": [{"task_type": "t"}, {"task_type": "t", "max_retries": 3.0}]}')
    assert batch.tasks[1].max_retries == 3
    schedule = parse_request(b'{"weeks": 2.0, "max_instances": 1e0, "hour": 3.0, "seconds": 2.5}')
    assert (schedule.weeks, schedule.max_instances, schedule.hour, schedule.seconds) == (
        2, 1, 3, 2.5)


@pytest.mark.parametrize(("written", "why"), [
    (b"58.5", "got `float`"), (b'"58"', "got `str`"), (b"5e999999999", "out of range"),
    (b"true", "got `bool`"),
])
def test_a_fraction_a_string_or_too_large_a_number_is_still_refused(written: bytes,
                                                                     why: str) -> None:
    started = time.monotonic()
    with pytest.raises(InvalidJob, match=why) as refused:
        parse_task(b'{"task_type": "t", "priority": ' + written + b"}")
    assert refused.value.field == "priority"
    with pytest.raises(ScheduleError):
        parse_request(b'{"weeks": ' + written + b"}")
    assert time.monotonic() - started < 1  # 5e999999999 is never turned into an int
