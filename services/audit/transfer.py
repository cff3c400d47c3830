"""`jobledger export` and `jobledger import`: a log as JSON lines, one record a line, with
its place in the log and its chain link (docs/audit.md, "Export and import").

A line: {"topic", "partition", "partitions" (of its topic), "offset", "key",
"timestamp_ms", "chain" (the record's link, hex), "envelope" (the record's bytes, as they
are: a JSON envelope)}. A record whose bytes are not one line of JSON (another producer's)
has "value_b64" instead of "envelope". Keeping the bytes as they are is what lets the file
be checked against its chain, and imported into a log with the same chain.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import msgspec

from jobledger.schemas.envelope import JOBS, LOGS
from jobledger.services.audit.source import Row, Slot, Source
from jobledger.services.audit.verify import Range
from jobledger.services.log.chain import genesis, link
from jobledger.services.log.protocol import Entry
from jobledger.services.log.sqlite import SQLiteLogBackend


class Line(msgspec.Struct, omit_defaults=True):
    topic: str
    partition: int
    partitions: int
    offset: int
    key: str
    timestamp_ms: int
    chain: str
    envelope: msgspec.Raw = msgspec.Raw()  # empty: the value is in value_b64
    value_b64: str | None = None

    def value(self) -> bytes:
        if self.value_b64 is None:
            return bytes(self.envelope)
        return base64.b64decode(self.value_b64)


class BrokenFile(ValueError):
    """An import file that is not a whole, unbroken export; the message names the line."""


_encoder = msgspec.json.Encoder()
_line_decoder = msgspec.json.Decoder(Line)
_json = msgspec.json.Decoder(msgspec.Raw)


@dataclass(frozen=True)
class Filter:
    topic: str | None = None
    task: str | None = None  # a task's events: keyed by its id on the jobs and logs topics

    def topics(self, source: Source) -> list[str]:
        if self.topic is not None:
            if self.topic not in source.partitions:
                raise ValueError(f"--topic: no topic {self.topic!r} in {source.where} (it has "
                                 f"{', '.join(source.partitions)})")
            return [self.topic]
        return [t for t in source.partitions if self.task is None or t in (JOBS, LOGS)]


async def export(source: Source, want: Range, only: Filter, out: IO[bytes],
                 advance: Callable[[int], None]) -> int:
    """Write the records in range as lines; how many."""
    written = 0
    ends = await source.ends()
    for topic in only.topics(source):
        for part in range(source.partitions[topic]):
            slot = (topic, part)
            start = await source.offset_at(slot, want.start, 0)
            stop = min(await source.offset_at(slot, want.stop, ends[slot]), ends[slot])
            written += await _export_partition(source, slot, start, stop, only, out, advance)
    out.flush()
    return written


async def _export_partition(source: Source, slot: Slot, start: int, stop: int, only: Filter,
                            out: IO[bytes], advance: Callable[[int], None]) -> int:
    prev = await source.link_before(slot, start)
    begin = start if prev is not None else 0  # Kafka: the links are computed from offset 0
    prev = prev or genesis(*slot)
    count = source.partitions[slot[0]]
    written = 0
    async for batch in source.rows(slot, begin, stop):
        chunk = []
        for row in batch:
            prev = row.stored or link(prev, row.offset, row.key, row.value)
            if row.offset >= start and (only.task is None or row.key == only.task):
                chunk.append(_encoder.encode(_line(slot, count, row, prev)))
        out.write(b"\n".join(chunk) + b"\n" if chunk else b"")
        written += len(chunk)
        advance(len(batch))
    return written


def _line(slot: Slot, partitions: int, row: Row, chain: bytes) -> Line:
    line = Line(slot[0], slot[1], partitions, row.offset, row.key, row.timestamp_ms, chain.hex())
    if b"\n" not in row.value:
        try:
            _json.decode(row.value)
            line.envelope = msgspec.Raw(row.value)
            return line
        except msgspec.DecodeError:
            pass
    line.value_b64 = base64.b64encode(row.value).decode()
    return line


# -- import ------------------------------------------------------------------------------


def read_lines(path: Path) -> Iterator[tuple[int, Line]]:
    """The lines of an export file, numbered from 1; BrokenFile naming a bad one."""
    with path.open("rb") as file:
        for number, raw in enumerate(file, 1):
            if not raw.strip():
                continue
            try:
                yield number, _line_decoder.decode(raw)
            except msgspec.DecodeError as error:
                raise BrokenFile(f"{path}, line {number}: not an export line: {error}") from None


def check_file(path: Path, advance: Callable[[int], None]) -> dict[str, int]:
    """Check that the file holds whole partitions from offset 0, every record giving its
    chain link; the partition count of each topic. BrokenFile names the first bad line."""
    heads: dict[Slot, tuple[int, bytes]] = {}
    counts: dict[str, int] = {}
    for number, line in read_lines(path):
        where = f"{path}, line {number}: {line.topic}/{line.partition} offset {line.offset}"
        if counts.setdefault(line.topic, line.partitions) != line.partitions \
                or not 0 <= line.partition < line.partitions:
            raise BrokenFile(f"{where}: partition {line.partition} of {line.partitions} does "
                             f"not match the topic's earlier lines ({counts[line.topic]})")
        slot = (line.topic, line.partition)
        end, prev = heads.get(slot, (0, genesis(*slot)))
        if line.offset != end:
            what = "missing records before it" if line.offset > end else "out of order"
            raise BrokenFile(f"{where}: expected offset {end}: {what} (import takes a whole "
                             "export: no --from, --task or --topic)")
        new = link(prev, line.offset, line.key, line.value())
        if new.hex() != line.chain:
            raise BrokenFile(f"{where}: the record does not give its chain link: it was changed")
        heads[slot] = (end + 1, new)
        advance(1)
    return counts


async def import_file(path: Path, db: Path, counts: dict[str, int],
                      advance: Callable[[int], None]) -> int:
    """Append the records of a file check_file passed (counts: what it returned) to a new
    log at db, at the same partitions and offsets; how many. The log's own chain then
    equals the file's."""
    backend = await SQLiteLogBackend.open(db, counts)
    try:
        ends = {t: sum((await backend.topic(t).end_offsets()).values()) for t in counts}
        if any(ends.values()):
            raise ValueError(f"--db: {db} already holds records: import into a new log file")
        total = 0
        for topic, entries in _batches(path):
            await backend.topic(topic).append(entries)
            total += len(entries)
            advance(len(entries))
        return total
    finally:
        await backend.close()


def _batches(path: Path, size: int = 2_000) -> Iterator[tuple[str, list[Entry]]]:
    """Consecutive lines of one topic, as entries at their partition and time."""
    topic, entries = "", list[Entry]()
    for _, line in read_lines(path):
        if entries and (line.topic != topic or len(entries) >= size):
            yield topic, entries
            entries = []
        topic = line.topic
        entries.append(Entry(line.key, line.value(), line.partition, line.timestamp_ms))
    if entries:
        yield topic, entries
