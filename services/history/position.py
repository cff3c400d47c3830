"""Where in the log a point in time stands: a position across topics and partitions.

A position is, for each partition of each topic, the next offset: the state "at" it is
every record before it applied, and none after. Written as text (docs/audit.md) it is a
comma-separated list of `topic/partition:offset`, e.g.
`jobs/0:120,jobs/1:98,logs/0:40,workers/0:5`; a partition it does not name contributes
nothing (offset 0). The same text is what an as_of answer says it reflects, so a caller
can ask for exactly that state again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

Positions = dict[str, dict[int, int]]  # topic -> partition -> next offset

_PART = re.compile(r"([a-z_]+)/(\d{1,6}):(\d{1,18})")


class AsOfError(ValueError):
    """An as_of that cannot be answered; code says why (api/errors.py CODES)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def format_position(positions: Mapping[str, Mapping[int, int]]) -> str:
    """The text of a position, topics and partitions in order (offsets 0 left out)."""
    return ",".join(f"{topic}/{p}:{o}" for topic in sorted(positions)
                    for p, o in sorted(positions[topic].items()) if o)


def parse_position(text: str, partitions: Mapping[str, int]) -> Positions:
    """A position from its text; AsOfError naming the part that is wrong. partitions:
    the topics this log has, and how many partitions each."""
    out: Positions = {}
    for part in text.split(","):
        match = _PART.fullmatch(part.strip())
        if match is None:
            raise AsOfError("INVALID_ARGUMENT", f"as_of: {part!r} is neither an RFC 3339 time "
                            "nor a position part topic/partition:offset (jobs/0:120)")
        topic, partition, offset = match[1], int(match[2]), int(match[3])
        if topic not in partitions:
            raise AsOfError("INVALID_ARGUMENT", f"as_of: no topic {topic!r} (topics: "
                            f"{', '.join(sorted(partitions))})")
        if partition >= partitions[topic]:
            raise AsOfError("INVALID_ARGUMENT", f"as_of: topic {topic} has "
                            f"{partitions[topic]} partitions, not {partition + 1}")
        out.setdefault(topic, {})[partition] = offset
    return out


def parse_time(text: str) -> datetime | None:
    """An RFC 3339 time with its offset; None if the text is not a time at all (then it
    is taken for a position). A time without a timezone is an AsOfError."""
    if "/" in text or not text[:4].isdigit():
        return None
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise AsOfError("INVALID_ARGUMENT", f"as_of: {text!r} is not an RFC 3339 time "
                        "(2026-01-31T09:00:00Z)") from None
    if moment.tzinfo is None:
        raise AsOfError("INVALID_ARGUMENT", f"as_of: {text!r} has no timezone "
                        "(2026-01-31T09:00:00Z)")
    # Before any log's first record either way, and times before it have no Unix ms to
    # write in the answer's headers.
    return max(moment, EPOCH)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
