"""Small shared types of the event model: ids, times, actors, progress, log levels."""

from __future__ import annotations

import enum
import random
import time
from datetime import UTC, datetime
from typing import Annotated

import msgspec

Priority = Annotated[int, msgspec.Meta(ge=0, le=255, description="0–255, higher runs first")]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
Attempt = Annotated[
    int, msgspec.Meta(ge=1, description="1-based attempt number; the lease's fencing token")]
PositiveSeconds = Annotated[float, msgspec.Meta(gt=0)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
# The years a time given to the API may be written in, from FIRST_YEAR up to (not
# including) END_YEAR: times the clock, the read models and the timers can represent,
# whatever the UTC offset. YEAR_PATTERN matches them, for the OpenAPI document.
FIRST_YEAR, END_YEAR = 1970, 9000
YEAR_PATTERN = "(19[7-9][0-9]|[2-8][0-9]{3})"

_random = random.Random()  # seeded from os.urandom once
_getrandbits = _random.getrandbits
_time_ns = time.time_ns
DEFAULT_TIMEOUT_SECONDS = 300.0
DEFAULT_MAX_RETRIES = 3


def uuid7() -> str:
    """A UUIDv7 string: 48 bits of Unix milliseconds, then random bits, so ids sort by creation."""
    ms = _time_ns() // 1_000_000
    # Ids need to be unique, not secret: the PRNG is far cheaper than os.urandom here
    # (docs/performance.md, "Figures behind the code").
    r = _getrandbits(74)
    # unix_ts_ms (48) | version 7 (4) | rand_a (12) | variant 0b10 (2) | rand_b (62)
    # One %-format: measured 1.6x faster here than the f-string with five format specs.
    return "%08x-%04x-7%03x-%04x-%012x" % (  # noqa: UP031
        ms >> 16, ms & 0xFFFF, r >> 62, 0x8000 | ((r >> 48) & 0x3FFF), r & 0xFFFF_FFFF_FFFF)


# A random byte -> the hex digit of a UUID's variant nibble (0b10xx): one of 8, 9, a, b.
_VARIANT_DIGITS = bytes(b"89ab"[i & 3] for i in range(256))
_randbytes = _random.randbytes
_SMALL_BATCH = 6
# A batch's ids are written into one buffer of 37-byte slots (an id and a space). Where
# each id's 18 random hex digits go in its slot: rand_a after the version digit 7, the
# three after the variant digit (slot byte 19), then the last twelve.
_SLOT = 37
_RANDOM_AT = (15, 16, 17, 20, 21, 22, *range(24, 36))
_SLOT_TAIL = b"000-8000-000000000000 "


def uuid7s(count: int) -> list[str]:
    """`count` UUIDv7 strings of this millisecond, as uuid7() makes them, for a batch
    (one enqueue of 1,000 jobs needs 2,000). The random bits are drawn and hex-encoded
    once, then each digit position of every id is filled at once (a strided copy in C),
    rather than each id cut out with an f-string: a fraction of the cost an id
    (docs/performance.md, "Figures behind the code")."""
    if count <= _SMALL_BATCH:  # the copies cost more than they save for a few
        return [uuid7() for _ in range(count)]
    ms = _time_ns() // 1_000_000
    slots = bytearray(b"%08x-%04x-7%s" % (ms >> 16, ms & 0xFFFF, _SLOT_TAIL) * count)
    digits = _randbytes(9 * count).hex().encode()
    for nth, at in enumerate(_RANDOM_AT):
        slots[at::_SLOT] = digits[nth::18]
    slots[19::_SLOT] = _randbytes(count).translate(_VARIANT_DIGITS)
    return slots.decode().split()


def json_null() -> msgspec.Raw:
    """A JSON null: the default_factory of the events' payload and result fields."""
    return msgspec.Raw(b"null")


def to_ms(moment: datetime) -> int:
    """Milliseconds since the Unix epoch; read models store times this way so they sort as
    numbers."""
    return int(moment.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def iso_ms(ms: int | None) -> str | None:
    """ISO 8601 UTC with a trailing Z and millisecond precision, as the API shows times."""
    if ms is None:
        return None
    return from_ms(ms).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


class ActorKind(enum.StrEnum):
    """Who caused an event. Only `key` and `user` are verified identities; the rest name
    themselves (docs/security.md)."""

    API = "api"  # a REST caller with auth off; id is the X-API-Key-Name it sent, unverified
    KEY = "key"  # a REST caller authenticated by an API key: id is the key's id
    USER = "user"  # a REST caller authenticated as a user: id is the user's id
    CLIENT = "client"  # the Python client or another producer writing to the log directly
    WORKER = "worker"  # a worker slot reporting what its handler did
    DISPATCHER = "dispatcher"  # the partition owner's own policy: picks, lease expiry, retries
    SCHEDULER = "scheduler"


VERIFIED_KINDS = frozenset({ActorKind.KEY, ActorKind.USER})


class Actor(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """omit_defaults: `name` (added later) and an empty `id` stay off the wire, so the
    actors of every other kind encode as they did before it, and older builds read them."""

    kind: ActorKind
    id: str = ""
    name: str = ""  # a key's or user's name as it was when the event was written


class LogLevel(enum.StrEnum):
    TRACE = "TRACE"
    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"
    FATAL = "FATAL"


class Progress(msgspec.Struct, frozen=True, gc=False):
    """Items a run has processed so far; total is null while unknown."""

    processed: NonNegativeInt = 0
    total: NonNegativeInt | None = None
    failed: NonNegativeInt = 0
