"""The wire format: JSON envelopes, decoded with one decoder built once.

Decoding accepts unknown fields (a newer producer may add some) and upcasts old event
versions. A record that cannot be decoded raises UndecodableRecord; consumers quarantine
it (the quarantine table of the read models) and go on.

A record nested deeper than msgspec's recursion reaches is decoded all the same
(schemas/nesting.py), up to MAX_RECORD_DEPTH; deeper than that, it is undecodable.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple, Protocol

import msgspec
from msgspec.structs import force_setattr

from .envelope import Envelope, event_types
from .nesting import decode_deep, nesting_depth
from .upcast import upcast

_decoder = msgspec.json.Decoder(Envelope)
_raw_decoder = msgspec.json.Decoder(dict[str, Any])
_encoder = msgspec.json.Encoder()
# Records may nest this deep (arrays and objects, the envelope included). No jobledger
# ever wrote a deeper one: its API decoded request bodies by recursion, which stops at
# Python's recursion limit (about 1,000 levels on 3.11). A deeper record came from another
# producer, and no handler could decode its payload: it is quarantined. A fixed number,
# not a setting, so every reader and every replay decides alike.
MAX_RECORD_DEPTH = 10_000


def _current_version(cls: type[msgspec.Struct]) -> int:
    (field,) = [f for f in msgspec.structs.fields(cls) if f.name == "v"]
    return int(field.default)


CURRENT_VERSION: dict[type[msgspec.Struct], int] = {
    cls: _current_version(cls) for cls in event_types()
}
CURRENT_BY_TAG: dict[str, int] = {
    cls.__struct_config__.tag: v  # type: ignore[misc]  # msgspec: str | int | None; events': str
    for cls, v in CURRENT_VERSION.items()
}


class UndecodableRecord(ValueError):
    """A log record that is not a valid envelope; the message says what is wrong."""


def encode(envelope: Envelope) -> bytes:
    return _encoder.encode(envelope)


def decode(value: bytes, partition: int = -1, offset: int = -1) -> Envelope:
    """Decode one record, upcasting an old event version; raise UndecodableRecord."""
    if len(value) > 2 * MAX_RECORD_DEPTH:  # a shorter one cannot nest that deep
        _check_depth(value)
    try:
        env = _decoder.decode(value)
        if env.event.v != CURRENT_VERSION[type(env.event)]:
            env = _decode_versioned(value)
    except msgspec.ValidationError:
        env = _decode_versioned(value)
    except msgspec.DecodeError as exc:
        raise UndecodableRecord(f"not JSON: {exc}") from None
    except RecursionError:
        env = _decode_deep(value)
    if partition >= 0:
        # Set on the fresh object, which nothing else holds yet: a copy (structs.replace)
        # cost a third as much as decoding the record.
        force_setattr(env, "partition", partition)
        force_setattr(env, "offset", offset)
    return env


def _decode_deep(value: bytes) -> Envelope:
    """A record nested deeper than msgspec's recursion reaches: a payload stored before
    the API limited nesting (docs/reliability.md), or one from another producer."""
    try:
        env = decode_deep(_decoder, value)
    except msgspec.ValidationError:
        return _decode_versioned(value)
    except msgspec.DecodeError as exc:
        raise UndecodableRecord(f"not JSON: {exc}") from None
    if env.event.v != CURRENT_VERSION[type(env.event)]:
        return _decode_versioned(value)
    return env


def _decode_versioned(value: bytes) -> Envelope:
    """The slow path: an event of an older (or unknown) version."""
    try:
        raw = decode_deep(_raw_decoder, value)
    except msgspec.ValidationError as exc:
        raise UndecodableRecord(str(exc)) from None
    except msgspec.DecodeError as exc:
        # The fast path can stop at a wrong type before it reaches a syntax error further on.
        raise UndecodableRecord(f"not JSON: {exc}") from None
    event = raw.get("event")
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise UndecodableRecord("the envelope has no event object with a 'type' string")
    current = CURRENT_BY_TAG.get(event["type"])
    if current is None:
        raise UndecodableRecord(f"unknown event type {event['type']!r}")
    version = event.get("v", current)
    if not isinstance(version, int) or isinstance(version, bool):
        raise UndecodableRecord(f"{event['type']} has a version {version!r} that is not an integer")
    if version > current:
        raise UndecodableRecord(
            f"{event['type']} version {version!r} is newer than this build knows ({current})"
        )
    try:
        raw["event"] = upcast(event, current)
    except KeyError as exc:
        raise UndecodableRecord(f"no upcaster for {exc}") from None
    except (TypeError, ValueError) as exc:
        # Upcasters read fields that were never validated (e.g. a string memory_bytes).
        raise UndecodableRecord(f"cannot upcast {event['type']} v{version}: {exc}") from None
    try:
        return msgspec.convert(raw, Envelope)
    except msgspec.ValidationError as exc:
        raise UndecodableRecord(str(exc)) from None


def _check_depth(value: bytes) -> None:
    if value.count(b"[") + value.count(b"{") > MAX_RECORD_DEPTH:
        depth = nesting_depth(value)
        if depth > MAX_RECORD_DEPTH:
            raise UndecodableRecord(f"nested {depth} levels deep; a record may nest at most "
                                    f"{MAX_RECORD_DEPTH}")


class HasValue(Protocol):
    partition: int
    offset: int
    key: str
    value: bytes
    decoded: Any


class Undecodable(NamedTuple):
    """A record that failed to decode, with the reason: it goes to quarantine."""

    partition: int
    offset: int
    key: str
    value: bytes
    error: str


def decode_batch(records: Iterable[HasValue]) -> tuple[list[Envelope], list[Undecodable]]:
    """Decode log records; the undecodable ones are returned apart, never raised."""
    good: list[Envelope] = []
    bad: list[Undecodable] = []
    for rec in records:
        env = rec.decoded
        if env is None:
            try:
                env = rec.decoded = decode(rec.value, rec.partition, rec.offset)
            except UndecodableRecord as exc:
                bad.append(Undecodable(rec.partition, rec.offset, rec.key, rec.value, str(exc)))
                continue
        good.append(env)
    return good, bad
