"""The wire format: encode/decode of envelopes, upcasting, and clear errors for bad records."""

from __future__ import annotations

import json
import uuid
from typing import Any

import msgspec
import pytest

from jobledger.schemas import (
    Actor,
    ActorKind,
    Envelope,
    Event,
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
    KeyCreated,
    KeyRevoked,
    LogLevel,
    Permission,
    Progress,
    QueuePaused,
    QueueResumed,
    UndecodableRecord,
    UserPermissionsChanged,
    UserRegistered,
    UserRemoved,
    WorkerHeartbeat,
    WorkerLost,
    WorkerStarted,
    WorkerStopped,
    decode,
    encode,
)
from jobledger.schemas.codec import CURRENT_BY_TAG, decode_batch
from jobledger.schemas.common import uuid7, uuid7s
from jobledger.schemas.envelope import event_types
from jobledger.schemas.jsonschema import wire_schema
from jobledger.schemas.schedules import (
    CronTrigger,
    IntervalTrigger,
    MisfirePolicy,
    ScheduleDefined,
    ScheduleDefinition,
    ScheduleFired,
    SchedulePaused,
    ScheduleRemoved,
    ScheduleResumed,
    ScheduleSkipped,
    ScheduleUpdated,
    SkipReason,
)
from jobledger.services.log.protocol import Record
from tests.support.builders import at

# One instance of every event type, with the optional fields set where there are any, so a
# field the codec drops or mangles shows up.
EXAMPLES: list[Event] = [
    JobEnqueued(
        job_id="j1", task_type="resize", queue="images", payload=msgspec.Raw(b'{"w":640}'),
        priority=200, run_at=at(60), timeout_seconds=12.5, max_retries=5, idempotency_key="k1",
    ),
    JobDue(job_id="j1"),
    JobPicked(job_id="j1", attempt=1, worker_id="w1", lease_expires_at=at(30)),
    JobHeartbeat(job_id="j1", attempt=1, lease_expires_at=at(60), progress=Progress(3, 10, 1)),
    JobLogged(job_id="j1", attempt=1, level=LogLevel.WARN, message="slow", details={"ms": 900}),
    JobSucceeded(job_id="j1", attempt=1, result=msgspec.Raw(b'[1,2]')),
    JobFailed(job_id="j1", attempt=2, error="Boom", stack="tb", retry_at=at(90), permanent=False),
    JobLeaseExpired(job_id="j1", attempt=3, retry_at=at(120)),
    JobCancelRequested(job_id="j1", reason="user"),
    JobCancelled(job_id="j1", attempt=3),
    JobRequeued(job_id="j1", task_type="resize", attempt=3, queue="images", priority=7,
                payload=msgspec.Raw(b'"x"'), timeout_seconds=1.0, max_retries=0),
    QueuePaused(queue="images"),
    QueueResumed(queue="images"),
    WorkerStarted(worker_id="w1", hostname="h", pid=42, concurrency=4, task_types=["resize"]),
    WorkerHeartbeat(worker_id="w1", cpu_percent=12.5, memory_mb=256.0, current_jobs=["j1"]),
    WorkerStopped(worker_id="w1", reason="sigterm"),
    WorkerLost(worker_id="w1"),
    ScheduleDefined(schedule_id="s1", definition=ScheduleDefinition(
        name="nightly", task_type="resize", timezone="Europe/Berlin",
        payload=msgspec.Raw(b'{"a":1}'),
        trigger=CronTrigger(hour="3", day_of_week="mon-fri", start_date=at(0), end_date=at(9e6)),
        priority=9, queue="images", timeout_seconds=5.0, max_retries=2,
        misfire_policy=MisfirePolicy.RUN_ALL, misfire_grace_time=5.0, max_instances=2, jitter=1.5,
    )),
    ScheduleUpdated(schedule_id="s1", definition=ScheduleDefinition(
        name="every", task_type="resize", trigger=IntervalTrigger(minutes=5, start_date=at(60)))),
    SchedulePaused(schedule_id="s1"),
    ScheduleResumed(schedule_id="s1"),
    ScheduleRemoved(schedule_id="s1"),
    ScheduleFired(schedule_id="s1", fire_time=at(60), job_id="j1", manual=True),
    ScheduleSkipped(schedule_id="s1", fire_time=at(60), reason=SkipReason.MISFIRE,
                    last_fire_time=at(120), count=2),
    KeyCreated(key_id="k1", name="ci", prefix="jl_AbCd1234", digest="0f" * 32,
               permissions=[Permission.SUBMIT_TASKS, Permission.READ_TASKS], expires_at=at(60)),
    KeyRevoked(key_id="k1"),
    UserRegistered(user_id="u1", username="ana",
                   password_hash="$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
                   permissions=[Permission.READ_TASKS]),
    UserPermissionsChanged(user_id="u1", username="ana", permissions=[Permission.ADMIN]),
    UserRemoved(user_id="u1", username="ana"),
]


def wrap(event: Event) -> Envelope:
    return Envelope(
        id="0190a6b2-0000-7000-8000-000000000001", key="k", time=at(0),
        actor=Actor(ActorKind.CLIENT, "tests"), event=event, causation_id="c",
        correlation_id="r", trace={"traceparent": "00-abc-def-01"},
    )


def record(event: dict[str, Any], **envelope: Any) -> bytes:
    """A wire record built by hand, as a producer in another language would write it."""
    body: dict[str, Any] = {
        "id": "e1", "key": "k", "time": "2024-05-01T12:00:00Z",
        "actor": {"kind": "client"}, "event": event,
    }
    body.update(envelope)
    return json.dumps(body).encode()


def tag(event_type: type[msgspec.Struct]) -> str:
    return str(event_type.__struct_config__.tag)


# --- round trips ----------------------------------------------------------------------------


def test_examples_cover_every_event_type() -> None:
    # A new event type must be added to EXAMPLES (and so to the round trip below).
    assert [type(e) for e in EXAMPLES] == event_types()


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_every_event_type_round_trips(event: Event) -> None:
    env = wrap(event)
    assert decode(encode(env)) == env


def test_encode_leaves_out_partition_and_offset() -> None:
    # They are the record's place in the log, which the log knows; a producer never sends them.
    wire = json.loads(encode(wrap(JobDue(job_id="j1"))))
    assert "partition" not in wire and "offset" not in wire


def test_decode_fills_partition_and_offset() -> None:
    env = decode(encode(wrap(JobDue(job_id="j1"))), partition=1, offset=41)
    assert (env.partition, env.offset) == (1, 41)


def test_decode_without_a_position_leaves_the_defaults() -> None:
    env = decode(encode(wrap(JobDue(job_id="j1"))))
    assert (env.partition, env.offset) == (-1, -1)


# --- versions and evolution -----------------------------------------------------------------


def test_worker_heartbeat_v1_is_upcast_to_v2() -> None:
    v1 = {"type": "WorkerHeartbeat", "v": 1, "worker_id": "w1", "memory_bytes": 256 * 1024 * 1024}
    event = decode(record(v1)).event
    assert isinstance(event, WorkerHeartbeat)
    assert (event.v, event.memory_mb) == (2, 256.0)


def test_unknown_fields_are_accepted() -> None:
    # A newer producer may add fields; readers of the log ignore them rather than quarantine.
    raw = record({"type": "JobDue", "job_id": "j1", "shiny": True}, extra={"x": 1})
    assert decode(raw).event == JobDue(job_id="j1")


def test_record_without_version_is_read_as_the_current_version() -> None:
    # External producers (kcat, Java) may leave "v" out.
    event = decode(record({"type": "WorkerHeartbeat", "worker_id": "w1", "memory_mb": 3.5})).event
    assert isinstance(event, WorkerHeartbeat)
    assert (event.v, event.memory_mb) == (CURRENT_BY_TAG["WorkerHeartbeat"], 3.5)


def test_current_versions_are_known_for_every_tag() -> None:
    assert set(CURRENT_BY_TAG) == {tag(cls) for cls in event_types()}


# --- undecodable records ----------------------------------------------------------------------

ENQUEUE = {"type": "JobEnqueued", "job_id": "j1", "task_type": "t"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"{not json", "not JSON"),
        (b'{"id": 5, "key": ', "not JSON"),  # a wrong type before the syntax error
        (b"[1, 2]", "Expected `object`, got `array`"),
        (json.dumps({"id": "e1", "key": "k"}).encode(), "no event object"),
        (record({"job_id": "j1"}), "no event object"),
        (record({"type": ["JobDue"], "job_id": "j1"}), "no event object"),
        (record({"type": "JobExploded", "job_id": "j1"}), "unknown event type 'JobExploded'"),
        (record({**ENQUEUE, "v": 9}), "JobEnqueued version 9 is newer than this build knows (1)"),
        (record({**ENQUEUE, "v": "1"}), "JobEnqueued has a version '1' that is not an integer"),
        (record({**ENQUEUE, "v": 0}), "no upcaster for ('JobEnqueued', 0)"),
        (record({**ENQUEUE, "priority": 300}), "`$.event.priority`"),
        (record({**ENQUEUE, "v": 1}, time="yesterday"), "`$.time`"),
        (record({"type": "WorkerHeartbeat", "v": 1, "worker_id": "w", "memory_bytes": "lots"}),
         "cannot upcast WorkerHeartbeat v1"),
    ],
    ids=[
        "not_json", "malformed_after_type_error", "not_an_object", "missing_event",
        "event_without_type", "type_not_a_string", "unknown_type", "newer_version",
        "version_not_int", "version_without_upcaster", "invalid_field", "invalid_envelope_field",
        "upcaster_input_invalid",
    ],
)
def test_undecodable_record_says_what_is_wrong(value: bytes, message: str) -> None:
    with pytest.raises(UndecodableRecord) as info:
        decode(value)
    assert message in str(info.value)


def test_invalid_field_message_names_the_field_and_the_limit() -> None:
    with pytest.raises(UndecodableRecord, match=r"<= 255 - at `\$\.event\.priority`"):
        decode(record({**ENQUEUE, "priority": 300}))


def test_decode_batch_separates_good_and_bad_records() -> None:
    good_value = encode(wrap(JobDue(job_id="j1")))
    records = [
        Record(partition=0, offset=0, timestamp_ms=1, key="j1", value=good_value),
        Record(partition=0, offset=1, timestamp_ms=2, key="jx", value=b"garbage"),
        Record(partition=1, offset=7, timestamp_ms=3, key="j1", value=good_value),
    ]
    good, bad = decode_batch(records)
    assert [(e.partition, e.offset) for e in good] == [(0, 0), (1, 7)]
    assert len(bad) == 1
    assert (bad[0].partition, bad[0].offset, bad[0].key, bad[0].value) == (0, 1, "jx", b"garbage")
    assert bad[0].error.startswith("not JSON")


# --- the published JSON Schema ------------------------------------------------------------------


def test_wire_schema_defines_every_event_and_hides_log_positions() -> None:
    schema = wire_schema()
    for cls in event_types():
        # The discriminator a producer writes is the stable tag, not the class name.
        assert schema["$defs"][tag(cls)]["properties"]["type"] == {"enum": [tag(cls)]}
    envelope = schema["$defs"]["Envelope"]
    assert "partition" not in envelope["properties"]
    assert "offset" not in envelope["properties"]
    assert {"id", "key", "time", "actor", "event"} <= set(envelope["required"])


def test_wire_schema_is_json() -> None:
    # It is published as a file for producers in other languages.
    json.dumps(wire_schema())


@pytest.mark.parametrize("count", [1, 6, 7, 2_000])
def test_uuid7s_are_distinct_uuid7s_of_this_millisecond(count: int) -> None:
    """One by one (a few) or cut from one buffer (a batch), ids are what uuid7() makes."""
    before = uuid7()[:13]
    ids = uuid7s(count)
    after = uuid7()[:13]
    assert len(ids) == count == len(set(ids))
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # lower-case, dashes in place
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert before <= text[:13] <= after  # the time prefix: unix milliseconds
