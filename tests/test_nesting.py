"""schemas/nesting.py: the depth of JSON measured without recursion, and decoding JSON
nested deeper than msgspec's recursion reaches; and the wire format's use of both
(issue 18, item 3: a record with a deep payload must stay readable)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobledger.schemas import (
    Actor,
    ActorKind,
    Envelope,
    JobEnqueued,
    JobLogged,
    LogLevel,
    UndecodableRecord,
    decode,
    encode,
)
from jobledger.schemas.codec import MAX_RECORD_DEPTH
from jobledger.schemas.nesting import KEEP_LEVELS, decode_deep, exceeds, nesting_depth
from jobledger.schemas.schedules import IntervalTrigger, ScheduleDefined, ScheduleDefinition

# Deeper than msgspec decodes from any stack (Python's recursion limit is 1,000).
TOO_DEEP_FOR_RECURSION = 3000
json_values = st.recursive(
    st.none() | st.integers() | st.text(alphabet='ab"\\[]{}é', max_size=4),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=30,
)


def depth_of(value: Any) -> int:
    """The reference: arrays and objects, counted by recursion."""
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    return 0


def nested(depth: int, inner: bytes = b"") -> bytes:
    return b"[" * depth + inner + b"]" * depth


@given(json_values)
def test_the_depth_is_counted_as_recursion_counts_it(value: Any) -> None:
    data = json.dumps(value).encode()
    assert nesting_depth(data) == depth_of(value)
    for limit in range(depth_of(value) + 2):
        assert exceeds(data, limit) == (depth_of(value) > limit)


@pytest.mark.parametrize(("data", "depth"), [
    (nested(100_000), 100_000),  # one long chain
    (b"[" + b",".join([nested(5)] * 50_000) + b"]", 6),  # many short ones: peeled away
    (b"[" + b",".join([b'{"a":"]]]}","b":' + nested(70, b"1") + b"}"] * 5_000) + b"]", 72),
])
def test_deep_or_wide_json_is_measured_without_recursion(data: bytes, depth: int) -> None:
    assert nesting_depth(data) == depth


@pytest.mark.parametrize("depth", [KEEP_LEVELS + 1, TOO_DEEP_FOR_RECURSION])
def test_decode_deep_gives_back_what_the_fast_decoder_cannot_reach(depth: int) -> None:
    class Shape(msgspec.Struct):
        raw: msgspec.Raw
        anything: Any

    deep = nested(depth, b'"x"')
    raw = b'{"a":' + deep + b',"b":[1,{"c":"\\u00e9"}]}'
    anything = b'{"list":[' + deep + b',2]}'
    data = b'{"raw":' + raw + b',"anything":' + anything + b"}"
    decoded = decode_deep(msgspec.json.Decoder(Shape), data)
    assert bytes(decoded.raw) == raw  # a Raw field: its bytes, whole
    assert msgspec.json.encode(decoded.anything) == anything  # the cut parts as raw JSON
    with pytest.raises(msgspec.DecodeError):
        decode_deep(msgspec.json.Decoder(Shape), data[:-1])


def _envelope(event: Any) -> Envelope:
    return Envelope(id="e1", key="k1", time=datetime(2026, 1, 1, tzinfo=UTC),
                    actor=Actor(ActorKind.API, "anonymous"), event=event)


@pytest.mark.parametrize("depth", [975, TOO_DEEP_FOR_RECURSION])  # 975: the old API kept it
def test_a_record_whose_payload_nests_too_deep_for_recursion_decodes_whole(depth: int) -> None:
    payload = b'{"data": ' + nested(depth, b"1") + b"}"
    job = JobEnqueued(job_id="k1", task_type="echo", payload=msgspec.Raw(payload))
    env = decode(encode(_envelope(job)), 2, 7)
    assert isinstance(env.event, JobEnqueued) and bytes(env.event.payload) == payload
    assert (env.partition, env.offset) == (2, 7)
    definition = ScheduleDefinition(name="s", task_type="echo", trigger=IntervalTrigger(seconds=5),
                                    payload=msgspec.Raw(payload))
    env = decode(encode(_envelope(ScheduleDefined(schedule_id="s", definition=definition))))
    assert isinstance(env.event, ScheduleDefined)
    assert bytes(env.event.definition.payload) == payload


def test_deep_log_line_details_decode_with_the_deep_part_as_raw_json() -> None:
    deep = nested(TOO_DEEP_FOR_RECURSION)
    line = JobLogged(job_id="k1", attempt=1, level=LogLevel.INFO, message="m",
                     details={"trace": 1})
    env = decode(encode(_envelope(line)).replace(b'"trace":1', b'"trace":' + deep))
    assert isinstance(env.event, JobLogged)
    assert msgspec.json.encode(env.event.details) == b'{"trace":' + deep + b"}"


def test_a_record_deeper_than_any_writer_made_is_undecodable_and_quarantined() -> None:
    job = JobEnqueued(job_id="k1", task_type="echo",
                      payload=msgspec.Raw(nested(MAX_RECORD_DEPTH)))  # + envelope + event
    with pytest.raises(UndecodableRecord, match=f"nested {MAX_RECORD_DEPTH + 2} levels deep"):
        decode(encode(_envelope(job)))
