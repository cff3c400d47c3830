"""`jobledger migrate --to kafka://...`: copy a stopped embedded log into Kafka topics,
record for record (docs/audit.md, "Migrating to Kafka").

Every record keeps its topic, partition, offset, key, bytes and time, so event ids, keys
and each key's partition stay the same, and the chain continues: the Kafka topics' links,
computed by their readers, are the SQLite file's. The copy is resumable and idempotent:
each partition is copied in offset order, one append at a time, so after a crash Kafka
holds a prefix of every partition. A rerun checks that prefix against the file's chain
(reading it back) and copies the rest: no record twice, none skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from jobledger.services.audit.source import BATCH, Slot, Source, SQLiteSource
from jobledger.services.log.chain import genesis, link
from jobledger.services.log.protocol import Entry, LogError
from jobledger.services.log.sqlite import SQLiteLogBackend

if TYPE_CHECKING:
    from jobledger.services.log.kafka import KafkaConfig, KafkaLogBackend


async def migrate(db: Path, config: KafkaConfig, advance: Callable[[int], None],
                  total: Callable[[int], None]) -> dict[Slot, tuple[int, int]]:
    """Copy the log at db into the topics config names; per partition, (records already
    there, records copied now)."""
    from jobledger.services.log.kafka import KafkaLogBackend

    if not db.exists():
        raise ValueError(f"--db: no log at {db}")
    holder = await SQLiteLogBackend.open(db, {})  # the write lock: the log must be stopped
    try:
        source = await Source.sqlite(db)
        try:
            if (await source.retained()).starts:  # Kafka offsets start at 0: none to put it
                raise ValueError(f"--db: {db} was cut by --log-retention (its partitions no "
                                 "longer start at offset 0): only a whole log can be migrated")
            config = replace(config, partitioner="crc32")
            kafka = await KafkaLogBackend.open(config, source.partitions)
            try:
                return await _copy(source, kafka, advance, total)
            finally:
                await kafka.close()
        finally:
            await source.close()
    finally:
        await holder.close()


async def _copy(source: SQLiteSource, kafka: KafkaLogBackend, advance: Callable[[int], None],
                total: Callable[[int], None]) -> dict[Slot, tuple[int, int]]:
    ends = await source.ends()
    there: dict[Slot, int] = {}
    for topic, count in source.partitions.items():
        have = kafka.topic(topic).partitions
        if have != count:
            raise LogError(f"topic {kafka.config.topic_name(topic)!r} has {have} partitions, "
                           f"the log's {topic} {count}: migrate into new topics (--topic-prefix)")
        for part, end in (await kafka.topic(topic).end_offsets()).items():
            there[(topic, part)] = end
    total(sum(ends.values()))
    done: dict[Slot, tuple[int, int]] = {}
    for slot in sorted(ends):
        await _check_prefix(source, kafka, slot, there[slot], ends[slot], advance)
        copied = await _copy_partition(source, kafka, slot, there[slot], ends[slot], advance)
        done[slot] = (there[slot], copied)
    return done


async def _check_prefix(source: SQLiteSource, kafka: KafkaLogBackend, slot: Slot, there: int,
                        end: int, advance: Callable[[int], None]) -> None:
    """What a partition's topic already holds must be the log's first records."""
    name = f"{kafka.config.topic_name(slot[0])}[{slot[1]}]"
    if there > end:
        raise LogError(f"{name} holds {there} records, the log's partition {end}: these topics "
                       "hold another log; migrate into new topics (--topic-prefix)")
    if not there:
        return
    expected = await source.link_before(slot, there)
    prev, offset = genesis(*slot), 0
    while offset < there:
        records = await kafka.topic(slot[0]).read(slot[1], offset, min(BATCH, there - offset))
        for record in records:
            if record.offset != offset:
                raise LogError(f"{name} has no record at offset {offset}")
            prev = link(prev, record.offset, record.key, record.value)
            offset += 1
        advance(len(records))
    if prev != expected:
        raise LogError(f"{name}: its {there} records are not the log's first {there} (their "
                       "chains differ): migrate into new topics (--topic-prefix)")


async def _copy_partition(source: SQLiteSource, kafka: KafkaLogBackend, slot: Slot, start: int,
                          end: int, advance: Callable[[int], None]) -> int:
    log = kafka.topic(slot[0])
    copied = 0
    async for rows in source.rows(slot, start, end):
        entries = [Entry(row.key, row.value, slot[1], row.timestamp_ms) for row in rows]
        positions = await log.append(entries)
        if positions[0][1] != rows[0].offset or positions[-1][1] != rows[-1].offset:
            raise LogError(f"{kafka.config.topic_name(slot[0])}[{slot[1]}]: records landed at "
                           f"offsets {positions[0][1]}..{positions[-1][1]}, not "
                           f"{rows[0].offset}..{rows[-1].offset}: another producer writes "
                           "these topics; stop it")
        copied += len(rows)
        advance(len(rows))
    return copied
