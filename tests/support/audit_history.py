"""A log for the audit tests: the golden histories (tests/golden/) and one event of every
kind they lack, in a SQLite log laid out as `jobledger serve` lays it out."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from jobledger.schemas import Actor, ActorKind, Envelope, decode, encode, topic_of
from jobledger.schemas.envelope import event_types
from jobledger.services.log.protocol import Entry
from jobledger.services.log.sqlite import SQLiteLogBackend
from tests.support.builders import at, key_of
from tests.test_codec import EXAMPLES

GOLDEN = Path(__file__).parent.parent / "golden"
SERVE_PARTITIONS = {"jobs": 4, "logs": 4, "workers": 1, "schedules": 1, "security": 1}


def history_lines() -> list[bytes]:
    """Every golden record, then one record of each event kind the golden files lack."""
    lines = [line for name in ("history_v1", "security_v1")
             for line in (GOLDEN / f"{name}.jsonl").read_bytes().splitlines() if line.strip()]
    seen = {json.loads(line)["event"]["type"] for line in lines}
    for event in EXAMPLES:
        if type(event).__struct_config__.tag not in seen:
            key = getattr(event, "schedule_id", None) or key_of(event)
            lines.append(encode(Envelope(id=f"ev-{key}-{type(event).__name__}", key=key,
                                         time=at(len(lines)), actor=Actor(ActorKind.API),
                                         event=event)))
    kinds = {json.loads(line)["event"]["type"] for line in lines}
    assert kinds == {cls.__struct_config__.tag for cls in event_types()}
    return lines


async def write_history(db: Path, lines: list[bytes] | None = None) -> int:
    """A log at db holding the lines, byte for byte; how many records."""
    backend = await SQLiteLogBackend.open(db, SERVE_PARTITIONS)
    try:
        lines = history_lines() if lines is None else lines
        for line in lines:
            env = decode(line)  # only to route it: the log gets the recorded bytes
            await backend.topic(topic_of(env.event)).append([Entry(env.key, line)])
        return len(lines)
    finally:
        await backend.close()


def busiest(db: Path) -> tuple[str, int, int]:
    """The topic, partition and record count of the partition with the most records."""
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT topic, partition, COUNT(*) AS n FROM records"
                           " GROUP BY topic, partition ORDER BY n DESC LIMIT 1").fetchone()
    conn.close()
    return str(row[0]), int(row[1]), int(row[2])
