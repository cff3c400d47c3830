"""Publisher.publish_then: a callback told at once when the append ends, no future; and
the envelopes of an enqueue, which the projector takes in place of decoding their records."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
from msgspec.structs import replace

from jobledger.schemas import JOBS, Actor, ActorKind, JobDue, encode
from jobledger.schemas.api import MAX_PAYLOAD_BYTES, TaskRequest
from jobledger.schemas.codec import decode
from jobledger.services.log.protocol import LogError
from jobledger.services.runtime.clock import ManualClock
from jobledger.services.write.producer import InvalidJob, Producer, parse_batch, task_request
from jobledger.services.write.publisher import Publisher
from tests.support.builders import open_log

Told = list[tuple[str, Any, BaseException | None]]


def teller(told: Told, name: str):  # type: ignore[no-untyped-def]
    return lambda position, error: told.append((name, position, error))


async def test_each_callback_learns_its_position_once_durable(tmp_path: Path) -> None:
    backend = await open_log(tmp_path / "log.db")
    try:
        publisher = Publisher(backend, ManualClock(), Actor(ActorKind.DISPATCHER, "d"))
        told: Told = []
        publisher.publish_then(JobDue(job_id="a"), "a", teller(told, "a"))
        publisher.publish_then(JobDue(job_id="a"), "a", teller(told, "b"))
        await publisher.drain()
        assert [(name, error) for name, _, error in told] == [("a", None), ("b", None)]
        (partition, first), (_, second) = told[0][1], told[1][1]
        assert second == first + 1
        (record,) = await backend.topic(JOBS).read(partition, first, limit=1)
        assert decode(record.value).event == JobDue(job_id="a")
    finally:
        await backend.close()


async def test_a_failing_callback_does_not_keep_the_others_untold(tmp_path: Path) -> None:
    backend = await open_log(tmp_path / "log.db")
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        publisher = Publisher(backend, ManualClock(), Actor(ActorKind.DISPATCHER, "d"))
        told: Told = []

        def broken(position: Any, error: BaseException | None) -> None:
            raise RuntimeError("broken callback")

        publisher.publish_then(JobDue(job_id="a"), "a", broken)
        publisher.publish_then(JobDue(job_id="a"), "a", teller(told, "b"))
        await publisher.drain()
        assert [name for name, _, _ in told] == ["b"]
        assert [str(c["exception"]) for c in reported] == ["broken callback"]
    finally:
        loop.set_exception_handler(None)
        await backend.close()


async def test_a_failed_append_is_told_with_its_error(tmp_path: Path) -> None:
    backend = await open_log(tmp_path / "log.db")
    await backend.close()
    publisher = Publisher(backend, ManualClock(), Actor(ActorKind.DISPATCHER, "d"))
    told: Told = []
    publisher.publish_then(JobDue(job_id="a"), "a", teller(told, "a"))
    await publisher.drain()
    ((name, position, error),) = told
    assert position is None and isinstance(error, LogError)


def test_an_enqueue_envelope_is_what_decoding_its_record_gives() -> None:
    # The projector takes the envelopes of new jobs in place of decoding their records
    # (Projector.expect_new), so the live read model must be what a replay builds.
    clock = ManualClock(datetime(2026, 12, 1, 21, 20, 54, 478138, tzinfo=UTC))
    producer = Producer(Publisher(None, clock, Actor(ActorKind.API, "a")), clock)  # type: ignore[arg-type]
    in_two_hours = datetime(2026, 12, 1, 23, 0, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    requests = [
        task_request("t"),
        task_request("t", {"n": [1, 2.5, "é"], "deep": {"x": None}}, priority=7, queue="q",
                     timeout_seconds=1.25, max_retries=0, delay_seconds=1.5),
        task_request("t", "x", schedule_at=in_two_hours),
        *parse_batch(b'{"tasks": [{"task_type": "t", "payload": { "spaced" : [1, 2] }}]}').tasks,
    ]
    for offset, env in enumerate(producer.envelopes(requests)):
        placed = replace(env, partition=3, offset=offset)
        assert decode(encode(env), 3, offset) == placed


def test_task_request_of_a_known_type_is_what_converting_gives() -> None:
    # A task type converted once is not converted again: the requests must not differ.
    first = task_request("known", {"n": 1})
    again = task_request("known", {"n": 1}, priority=None)
    assert again == first == msgspec.convert(
        {"task_type": "known", "payload": msgspec.Raw(b'{"n":1}')}, TaskRequest)
    assert again.payload == msgspec.Raw(b'{"n":1}')
    with pytest.raises(InvalidJob) as bad:
        task_request("known", priority=1_000)  # options are still converted and checked
    assert bad.value.field == "priority"
    for _ in range(2):
        with pytest.raises(InvalidJob) as bad:
            task_request("x" * 201)  # a refused name is refused every time
        assert bad.value.field == "task_type"
    with pytest.raises(InvalidJob):
        task_request(["known"])  # type: ignore[arg-type]  # not a name at all
    with pytest.raises(InvalidJob) as bad:
        task_request("known", "x" * MAX_PAYLOAD_BYTES)  # and the payload's size is checked
    assert bad.value.code == "PAYLOAD_TOO_LARGE"
