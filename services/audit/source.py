"""Reading a log's records with their chain links, from a SQLite file (read-only, also while
a server writes it) or from Kafka topics: what verify, anchor, export and migrate read.

A SQLite log stores each record's link (services/log/chain.py) and each partition's head;
Kafka topics store neither (several producers write one partition, so none of them knows
the previous link), and their links are computed here, from offset 0.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from jobledger.schemas.common import iso_ms
from jobledger.services.log.chain import genesis
from jobledger.services.log.chain_upgrade import UPGRADED
from jobledger.services.log.protocol import Log, LogBackend, LogError
from jobledger.services.log.sqlite import (
    SQLiteLogBackend,
    damage_named,
    partition_end,
    read_cut_time,
    read_cuts,
)

BATCH = 5_000
Slot = tuple[str, int]  # (topic, partition)


class Row(NamedTuple):
    offset: int
    timestamp_ms: int
    key: str
    value: bytes
    stored: bytes | None  # the link the log stores for it (SQLite); None: not stored (Kafka)


@dataclass(frozen=True)
class Head:
    """Where a partition's chain was recorded to end: the next offset and the last link."""

    end: int
    link: bytes


class NoChain(LogError):
    """A SQLite log written before the chain, not upgraded yet."""


class Source:
    """The records of a log, partition by partition, with their links. Use `await
    Source.sqlite(path)` or `await Source.kafka(config)`; close() when done."""

    def __init__(self, backend: LogBackend, partitions: dict[str, int], where: str):
        self.backend = backend
        self.partitions = partitions  # topic -> partition count, the topics with records
        self.where = where  # the log file, or the Kafka cluster and prefix

    @classmethod
    async def sqlite(cls, path: Path) -> SQLiteSource:
        backend = await SQLiteLogBackend.open(path, {}, read_only=True)
        try:
            counts = await backend.run(_topic_counts, backend.reader)
            source = SQLiteSource(backend, counts, str(path))
            await backend.run(source.check_chained)
        except BaseException:
            await backend.close()
            raise
        return source

    @classmethod
    async def kafka(cls, config: object) -> Source:
        from jobledger.services.audit.kafka_topics import open_existing

        backend, counts = await open_existing(config)
        return Source(backend, counts, f"{getattr(config, 'bootstrap_servers', '')}")

    def log(self, topic: str) -> Log:
        return self.backend.topic(topic)

    async def ends(self) -> dict[Slot, int]:
        out: dict[Slot, int] = {}
        for topic in self.partitions:
            for part, end in (await self.log(topic).end_offsets()).items():
                out[(topic, part)] = end
        return out

    async def offset_at(self, slot: Slot, when: datetime | int | None, default: int) -> int:
        """The first offset of a partition at or after a time, or the offset itself."""
        if when is None:
            return default
        if isinstance(when, int):
            return when
        found = await self.log(slot[0]).offset_for_time(slot[1], int(when.timestamp() * 1000))
        return default if found is None else found

    async def recorded_heads(self) -> dict[Slot, Head] | None:
        """Where the log recorded each chain to end; None if it records no heads (Kafka)."""
        return None

    async def upgrade_note(self) -> str | None:
        """What of the log was chained by an upgrade rather than as it was written."""
        return None

    async def retained(self) -> Retained:
        """Where --log-retention cut the log (Kafka: nothing recorded, see verify's gaps)."""
        return Retained({}, None)

    async def link_before(self, slot: Slot, offset: int) -> bytes | None:
        """The link of the record before offset, if the log stores it (None: compute the
        chain from offset 0)."""
        return genesis(*slot) if offset == 0 else None

    async def rows(self, slot: Slot, start: int, end: int) -> AsyncIterator[list[Row]]:
        """The records of a partition from start to end (exclusive), in offset order, in
        batches; a Kafka partition's records carry their computed links."""
        log = self.log(slot[0])
        offset = start
        while offset < end:
            records = await log.read(slot[1], offset, min(BATCH, end - offset))
            if not records:
                return
            yield [Row(r.offset, r.timestamp_ms, r.key, r.value, None) for r in records
                   if r.offset < end]
            offset = records[-1].offset + 1

    async def close(self) -> None:
        await self.backend.close()


@dataclass(frozen=True)
class Retained:
    """What a cut log still holds: each cut partition's first offset with the chain's link
    before it, and the earliest moment kept (None: never cut)."""

    starts: dict[Slot, tuple[int, bytes]]
    time_ms: int | None

    def start(self, slot: Slot) -> int:
        return self.starts.get(slot, (0, b""))[0]

    def note(self) -> str | None:
        if self.time_ms is None or not self.starts:
            return None
        starts = ", ".join(f"{t}/{p} from {o}" for (t, p), (o, _) in sorted(self.starts.items()))
        return (f"note: the log was cut by --log-retention: it keeps the records after "
                f"{iso_ms(self.time_ms)} ({starts}); older ones are gone, and the chain is "
                "checked from the link recorded at the cut")


class SQLiteSource(Source):
    """A SQLite log file, read on the backend's read-only connection."""

    backend: SQLiteLogBackend

    def check_chained(self) -> None:
        columns = {row[1] for row in self.backend.reader.execute("PRAGMA table_info(records)")}
        if "chain" not in columns:
            raise NoChain(f"the log {self.where} was written before the hash chain: chain it "
                          f"with `jobledger upgrade-chain --db {self.where}` (or start "
                          "`jobledger serve` on it once), then verify")

    _snapshot: tuple[dict[Slot, int], dict[Slot, Head]] | None = None

    async def upgrade_note(self) -> str | None:
        def read() -> str | None:
            row = self.backend.reader.execute("SELECT value FROM meta WHERE key = ?",
                                              (UPGRADED,)).fetchone()
            return None if row is None else str(row[0])

        note = await self.backend.run(read)
        if note is None:
            return None
        upgrade = json.loads(note)
        when = datetime.fromtimestamp(upgrade["time_ms"] / 1000, UTC)
        ends = ", ".join(f"{slot} below {end}" for slot, end in upgrade["ends"].items())
        return (f"note: records written before the chain were chained on "
                f"{when:%Y-%m-%dT%H:%M:%SZ} ({ends}): their links prove them unchanged since "
                "then, not before")

    async def recorded_heads(self) -> dict[Slot, Head]:
        return (await self.snapshot())[1]

    async def snapshot(self) -> tuple[dict[Slot, int], dict[Slot, Head]]:
        """Each partition's end and recorded head, read in one transaction (a server may be
        appending), once: everything after reads up to these ends."""
        if self._snapshot is None:
            self._snapshot = await self.backend.run(self._read_snapshot)
        return self._snapshot

    def _read_snapshot(self) -> tuple[dict[Slot, int], dict[Slot, Head]]:
        reader = self.backend.reader
        reader.execute("BEGIN")
        try:
            ends = {(topic, part): partition_end(reader, topic, part)
                    for topic, count in self.partitions.items() for part in range(count)}
            rows = reader.execute("SELECT topic, partition, next_offset, link"
                                  " FROM chain_heads").fetchall()
        finally:
            reader.execute("COMMIT")
        heads = {(t, p): Head(end, bytes(head)) for t, p, end, head in rows}
        for slot, head in heads.items():  # a log cut short still shows what it lost
            ends[slot] = max(ends.get(slot, 0), head.end)
        return ends, heads

    async def retained(self) -> Retained:
        def read() -> Retained:
            reader = self.backend.reader
            return Retained(read_cuts(reader), read_cut_time(reader))

        if self._retained is None:
            self._retained = await self.backend.run(read)
        return self._retained

    _retained: Retained | None = None

    async def link_before(self, slot: Slot, offset: int) -> bytes | None:
        if offset == 0:
            return genesis(*slot)
        start, link = (await self.retained()).starts.get(slot, (0, b""))
        if offset == start:
            return link

        def read() -> bytes | None:
            row = self.backend.reader.execute(
                "SELECT chain FROM records WHERE topic = ? AND partition = ? AND offset = ?",
                (*slot, offset - 1)).fetchone()
            return None if row is None or row[0] is None else bytes(row[0])

        return await self.backend.run(read)

    async def rows(self, slot: Slot, start: int, end: int) -> AsyncIterator[list[Row]]:
        offset = start
        while offset < end:
            batch = await self.backend.run(self._rows, slot, offset, end)
            if not batch:
                return
            yield batch
            offset = batch[-1].offset + 1

    def _rows(self, slot: Slot, start: int, end: int) -> list[Row]:
        with damage_named(self.backend.path):
            rows = self.backend.reader.execute(
                "SELECT offset, timestamp_ms, key, value, chain FROM records WHERE topic = ?"
                " AND partition = ? AND offset >= ? AND offset < ? ORDER BY offset LIMIT ?",
                (*slot, start, end, BATCH)).fetchall()
        return [Row(o, ts, _text(k), _bytes(v), None if c is None else _bytes(c))
                for o, ts, k, v, c in rows]

    async def ends(self) -> dict[Slot, int]:
        """Each partition's end: past its last record, or its recorded head if further (a
        log cut short still shows the records it lost as missing)."""
        return dict((await self.snapshot())[0])


def _bytes(stored: object) -> bytes:
    """A BLOB column as bytes, whatever type a hand edit left in it (SQLite keeps TEXT,
    INTEGER or REAL as written): such a record then fails its link as CHANGED."""
    if isinstance(stored, bytes):
        return stored
    return str(stored).encode("utf-8", "surrogatepass")


def _text(stored: object) -> str:
    """A TEXT column as str, likewise."""
    if isinstance(stored, str):
        return stored
    if isinstance(stored, bytes):
        return "\0blob:" + stored.hex()  # never equal to a key the writer stored
    return str(stored)


def _topic_counts(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT name, partitions FROM topics ORDER BY name").fetchall())
