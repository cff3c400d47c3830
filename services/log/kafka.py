"""The Kafka backend of the Log protocol (aiokafka), for the scale-out mode.

One Log is one Kafka topic named `<topic_prefix><role>`. Durability: the producer uses
acks=all (always) and, by default, the idempotent producer, so an acknowledged append is
on every in-sync replica and a retried batch is never written twice. docs/kafka.md has the
topics, the settings and what the tests can and cannot prove on the test broker.

How each requirement of services/log/protocol.py is met:

1. append: one shared producer; each append hands all its records to the producer under a
   per-topic lock, so the records of one partition queue up back to back, and aiokafka
   keeps one request in flight per broker, so they land in order. Offsets come from the
   delivery reports. Bad partitions and oversized records refuse the whole append before
   anything is sent.
3. read / 5. end_offsets: a manually assigned consumer seeks and fetches; "the end" is the
   highwater a fetch response reports (see `_Reader.end_offsets` for why not ListOffsets).
4. tail: a consumer of its own per tail, long-polling with a short fetch_max_wait_ms
   (`KafkaLogBackend.tail` follows several topics with one consumer).
6. offset_for_time: binary search over record timestamps (see `KafkaLog.offset_for_time`).
7. partition_for: Kafka's default partitioner (murmur2 of the key bytes), so a job enqueued
   by kcat or a Java producer lands on the partition jobledger expects; or, for topics
   migrated from an embedded log (`partitioner="crc32"`), the embedded log's CRC-32 (which
   is librdkafka's `consistent` partitioner), so every key keeps its partition.
"""

from __future__ import annotations

import asyncio
import logging
import re
import struct
import time
import zlib
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NotEnoughReplicasAfterAppendError,
    OffsetOutOfRangeError,
    RequestTimedOutError,
)
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from msgspec.structs import force_setattr
from opentelemetry import trace
from opentelemetry.trace import Tracer

from jobledger.schemas.codec import UndecodableRecord, decode
from jobledger.schemas.envelope import JOBS, LOGS, SCHEDULES, SECURITY, WORKERS
from jobledger.services.log.protocol import (
    AppendOutcomeUnknown,
    Entry,
    LogError,
    LogIdentity,
    Position,
    Record,
)
from jobledger.services.telemetry.context import trace_of_headers
from jobledger.services.telemetry.spans import KAFKA_OFFSET, PARTITION_ID, kafka_span

log = logging.getLogger("jobledger.kafka")

# The envelope routes events to JOBS / LOGS / WORKERS / SCHEDULES / SECURITY. Undecodable
# records are not events, so the dead-letter topic's name lives here, next to the backend
# creating it.
DEAD_LETTER = "dead_letter"
ROLES = (JOBS, LOGS, WORKERS, SCHEDULES, SECURITY, DEAD_LETTER)
# Topics of one partition: dead letters are rare and read in order by people; key events
# are few, and one partition orders all of them (docs/security.md).
SINGLE_PARTITION = (SECURITY, DEAD_LETTER)

# Every topic is history the read models are rebuilt from, so it is kept forever. That
# includes schedules: its records are events (ScheduleDefined, ...Updated, ...Fired), and
# compaction would keep only the newest event of each schedule and break every rebuild.
KEEP_FOREVER = {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}

COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")
PARTITIONERS = ("murmur2", "crc32")
TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]*")  # Kafka's legal topic-name characters
MAX_TOPIC_NAME = 249
READERS_PER_TOPIC = 4  # concurrent read/end_offsets calls per topic before they queue
READER_POLL_MS = 2  # how often a read checks for a fetch that brought only a highwater
READER_WAIT_MS = 1  # fetch_max_wait_ms of the readers of a few records (see _new_reader)
BULK_READER_WAIT_MS = 250  # and of those reading many records far behind the end
BULK_READ = 1000  # a read of at least this many records that are there is a bulk read
STARVED_READ_S = 0.1  # a short read whose fetches bring nothing this long goes on as bulk
TAIL_POLL_MS = 1000  # a tail's getmany returns on records; this only bounds each wait
FETCH_OVERHEAD = 64 * 1024  # batch and record headers above max_message_bytes

_MURMUR_SEED = 0x9747B28C
_MURMUR_M = 0x5BD1E995
_U32 = 0xFFFFFFFF
_WORDS: dict[int, Callable[[bytes], tuple[int, ...]]] = {}  # unpackers by count of words


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    """How jobledger talks to a Kafka cluster.

    idempotent: the idempotent producer (no duplicates or reordering when a batch is
        retried). On by default; the in-memory test broker (Tansu) cannot do it, so the
        tests set False.
    acks is always "all": an append is acknowledged once every in-sync replica has it.
    partitions / replication_factor / min_insync_replicas: used when a topic is created;
        existing topics keep theirs (they must have at least `partitions`).
    max_message_bytes: the largest record (key + value + headers) an append may carry;
        also set as max.message.bytes on the topics jobledger creates. 2 MiB leaves room
        for a 1 MiB job payload inside its envelope.
    fetch_max_wait_ms: how long a tail's fetch waits at the end of a partition. Apache
        Kafka answers a waiting fetch as soon as a record arrives, but some brokers (the
        test broker) only at the end of the wait, so this is the latency floor there.
    partitioner: how a key picks its partition. murmur2: Kafka's default. crc32: the
        embedded log's, for topics `jobledger migrate` filled; existing topics are then
        used with the partitions they have (the embedded log's counts).
    """

    bootstrap_servers: str
    topic_prefix: str = "jobledger."
    partitions: int = 12
    replication_factor: int = 1
    min_insync_replicas: int | None = None
    idempotent: bool = True
    client_id: str = "jobledger"
    compression: str = "none"
    max_message_bytes: int = 2 * 1024 * 1024
    request_timeout_ms: int = 30_000
    fetch_max_wait_ms: int = 10
    partitioner: str = "murmur2"

    def __post_init__(self) -> None:
        if not self.bootstrap_servers.strip():
            raise ValueError("bootstrap_servers: give at least one host:port")
        if not TOPIC_NAME.fullmatch(self.topic_prefix):
            raise ValueError(
                f"topic_prefix {self.topic_prefix!r}: only letters, digits, '.', '_', '-'"
            )
        for name in ("partitions", "replication_factor", "max_message_bytes",
                     "request_timeout_ms", "fetch_max_wait_ms"):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        if self.min_insync_replicas is not None and not (
            1 <= self.min_insync_replicas <= self.replication_factor
        ):
            raise ValueError(
                f"min_insync_replicas: must be between 1 and replication_factor "
                f"({self.replication_factor}), got {self.min_insync_replicas!r}"
            )
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression: one of {', '.join(COMPRESSIONS)}, "
                             f"got {self.compression!r}")  # fmt: skip
        if self.partitioner not in PARTITIONERS:
            raise ValueError(f"partitioner: one of {', '.join(PARTITIONERS)}, "
                             f"got {self.partitioner!r}")
        if not self.client_id:
            raise ValueError("client_id: must not be empty")

    def topic_name(self, role: str) -> str:
        name = self.topic_prefix + role
        if not TOPIC_NAME.fullmatch(name) or not 0 < len(name) <= MAX_TOPIC_NAME:
            raise LogError(f"topic name {name!r} is not a legal Kafka topic name")
        return name

    def topic_configs(self) -> dict[str, str]:
        """The configs every topic jobledger creates gets."""
        configs = dict(KEEP_FOREVER)
        configs["max.message.bytes"] = str(self.max_message_bytes)
        configs["message.timestamp.type"] = "CreateTime"  # keep the producer's timestamps
        if self.min_insync_replicas is not None:
            configs["min.insync.replicas"] = str(self.min_insync_replicas)
        return configs

    def client_settings(self) -> dict[str, object]:
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "request_timeout_ms": self.request_timeout_ms,
        }


async def existing_topics(config: KafkaConfig) -> set[str]:
    """The roles (jobs, logs, ...) that have a topic under config's prefix (LogError when
    the cluster cannot be reached)."""
    admin = AIOKafkaAdminClient(**config.client_settings())
    try:
        await admin.start()
        found = set(await admin.list_topics())
    except Exception as error:
        raise LogError(f"cannot reach Kafka at {config.bootstrap_servers}: {error!r}") from error
    finally:
        await admin.close()
    return {role for role in ROLES if config.topic_name(role) in found}


def jobledger_topics(config: KafkaConfig) -> dict[str, int]:
    """Partition counts of jobledger's topics: one for SINGLE_PARTITION's; the others spread
    by key over `config.partitions`."""
    return {role: 1 if role in SINGLE_PARTITION else config.partitions for role in ROLES}


def murmur2(data: bytes) -> int:
    """Java's Utils.murmur2 as an unsigned 32-bit value, as aiokafka's `murmur2` gives it,
    at a fraction of its cost: the whole words are unpacked in one call, and masks are
    taken only where a product can pass 32 bits. A worker needs two a job
    (docs/performance.md, "Figures behind the code"); tests/test_kafka_log.py checks that
    the two agree."""
    length = len(data)
    h = _MURMUR_SEED ^ length
    words = length >> 2
    unpack = _WORDS.get(words)
    if unpack is None:
        unpack = _WORDS[words] = struct.Struct(f"<{words}I").unpack_from
    for k in unpack(data):
        k = (k * _MURMUR_M) & _U32
        h = ((h * _MURMUR_M) & _U32) ^ (((k ^ (k >> 24)) * _MURMUR_M) & _U32)
    tail = words << 2
    extra = length - tail
    if extra:
        if extra >= 3:
            h ^= data[tail + 2] << 16
        if extra >= 2:
            h ^= data[tail + 1] << 8
        h = ((h ^ data[tail]) * _MURMUR_M) & _U32
    h = ((h ^ (h >> 13)) * _MURMUR_M) & _U32
    return h ^ (h >> 15)


def murmur2_partition(key: str, partitions: int) -> int:
    """Kafka's default partitioner: murmur2(key bytes) made positive, mod partitions."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def _to_record(message: ConsumerRecord[bytes, bytes]) -> Record:
    # Keys come from any producer: undecodable bytes are replaced rather than stopping a
    # tail; a null key (or a tombstone's null value) reads as empty.
    key = message.key.decode("utf-8", "replace") if message.key is not None else ""
    value = message.value if message.value is not None else b""
    record = Record(message.partition, message.offset, message.timestamp, key, value)
    if message.headers:
        _take_trace(record, message.headers)
    return record


def _take_trace(record: Record, headers: Sequence[tuple[str, bytes]]) -> None:
    """A producer outside jobledger (kcat, a Java client) may carry its trace in the
    record's W3C headers (traceparent, tracestate) rather than in the envelope: the
    envelope, decoded now (once: it is kept on the record), takes it unless it has its own."""
    carried = trace_of_headers(headers)
    if not carried:
        return
    try:
        env = decode(record.value, record.partition, record.offset)
    except UndecodableRecord:
        return  # quarantined where it is decoded again, as any undecodable record
    if not env.trace:
        force_setattr(env, "trace", carried)
    record.decoded = env


class Gaps:
    """Puts back records a fetch skipped. jobledger's topics are neither compacted (the
    schedules topic included, docs/kafka.md) nor transactional, so offsets follow one
    another; yet a fetch from the test broker can bring offset n + 1 before n, while
    another producer's append of n is still being stored, and the consumer's position then
    moves past n for good (seen in Kafka mode: a job enqueued and never picked, its
    JobEnqueued skipped by the owner's consumer). So each batch is checked against the
    next offset expected per partition, and a hole is read again (KafkaLog.read: a
    consumer of its own) before the batch goes on. What is still missing after READ_AGAIN
    tries (a topic someone compacted) is let go, with a warning."""

    READ_AGAIN = 3
    WAIT_S = 0.01  # between two reads of a hole: the append it misses is being stored

    def __init__(self, log: KafkaLog, starts: Mapping[int, int]):
        self.log = log
        self.next: dict[int, int] = dict(starts)

    def start(self, partition: int, offset: int) -> None:
        self.next[partition] = offset

    def forget(self, partitions: Collection[int]) -> None:
        for partition in partitions:
            self.next.pop(partition, None)

    async def fill(self, records: list[Record]) -> list[Record]:
        """records (each partition's in offset order), with the skipped ones put back."""
        out: list[Record] = []
        for rec in records:
            expected = self.next.get(rec.partition)
            if expected is not None and rec.offset > expected:
                out += await self._read_hole(rec.partition, expected, rec.offset)
            if expected is None or rec.offset >= expected:
                self.next[rec.partition] = rec.offset + 1
            out.append(rec)
        return out

    async def _read_hole(self, partition: int, start: int, end: int) -> list[Record]:
        for attempt in range(self.READ_AGAIN):
            if attempt:
                await asyncio.sleep(self.WAIT_S)
            got = [r for r in await self.log.read(partition, start, end - start) if r.offset < end]
            if len(got) == end - start:
                return got
        log.warning("%s[%d]: offsets %d to %d not found after a fetch skipped them",
                    self.log.kafka_topic, partition, start, end - 1)
        return got


class _Reader:
    """A manually assigned consumer that answers one read or end_offsets at a time."""

    def __init__(self, consumer: AIOKafkaConsumer, log: KafkaLog):
        self._consumer = consumer
        self._log = log

    async def read(self, partition: int, offset: int, limit: int,
                   starved_after: float | None = None) -> tuple[list[Record], bool]:  # fmt: skip
        """Up to limit records from offset, and whether the read stopped starved: for
        starved_after seconds the fetches brought nothing although the partition's highwater
        lies beyond the position (KafkaLog._new_reader says why a broker does that)."""
        tp = TopicPartition(self._log.kafka_topic, partition)
        self._assign({tp: offset})
        got: list[Record] = []
        deadline = self._log.deadline()
        progress = time.monotonic()
        while len(got) < limit:
            try:
                fetched = await self._consumer.getmany(
                    tp, timeout_ms=READER_POLL_MS, max_records=limit - len(got)
                )
            except OffsetOutOfRangeError:
                return await self._out_of_range(tp, offset, got), False
            if records := fetched.get(tp):
                got.extend(_to_record(m) for m in records)
                progress = time.monotonic()
            if await self._at_end(tp):
                break
            if starved_after is not None and time.monotonic() - progress > starved_after:
                return got, True
            self._log.check_deadline(deadline, f"read of partition {partition} from {offset}")
        return got, False

    async def end_offsets(self, known: Mapping[int, int], retry: bool = True) -> dict[int, int]:
        """The highwater of each partition, from fetch responses to requests sent now.

        Not ListOffsets "latest" (consumer.end_offsets): on the test broker it answers the
        newest batch's base offset + 1. The highwater of a fetch is the offset after the
        last record every in-sync replica has, i.e. the next offset of a committed append,
        on Apache Kafka and on the test broker alike. assign() starts fresh partition
        states, and aiokafka drops responses to requests made before it, so every highwater
        seen here answers a fetch sent after this call began. Each partition is fetched from
        the highest end seen so far, so usually the response brings no records at all.
        """
        tps = {TopicPartition(self._log.kafka_topic, p): o for p, o in known.items()}
        self._assign(tps)
        deadline = self._log.deadline()
        while True:
            try:
                await self._consumer.getmany(*tps, timeout_ms=READER_POLL_MS)
            except OffsetOutOfRangeError:
                # A remembered end beyond the log (the topic was deleted and made again), or
                # before its start (retention): probe again from each partition's start.
                if not retry:
                    raise LogError(f"end_offsets of {self._log.kafka_topic}: offsets keep "
                                   "moving out of range") from None  # fmt: skip
                starts = await self._consumer.beginning_offsets(list(tps))
                return await self.end_offsets({tp.partition: starts[tp] for tp in tps}, False)
            highwaters = {tp.partition: self._consumer.highwater(tp) for tp in tps}
            if None not in highwaters.values():
                return highwaters
            self._log.check_deadline(deadline, "end_offsets")

    def _assign(self, positions: Mapping[TopicPartition, int]) -> None:
        self._consumer.assign(list(positions))
        for tp, offset in positions.items():
            self._consumer.seek(tp, offset)

    async def _at_end(self, tp: TopicPartition) -> bool:
        highwater = self._consumer.highwater(tp)
        return highwater is not None and await self._consumer.position(tp) >= highwater

    async def _out_of_range(
        self, tp: TopicPartition, offset: int, got: list[Record]
    ) -> list[Record]:
        """Apache Kafka refuses a fetch past the end (the test broker answers it empty):
        past the end there is nothing to read; before the log start, records were deleted."""
        start = (await self._consumer.beginning_offsets([tp]))[tp]
        if offset < start:
            raise LogError(
                f"{tp.topic}[{tp.partition}] starts at offset {start}: records before it were "
                f"deleted (retention), so offset {offset} cannot be read"
            )
        return got

    def release(self) -> None:
        """Stop fetching until the next use. Pausing keeps the topic in the consumer's
        metadata (assign([]) would force a metadata refresh on the next use)."""
        self._consumer.pause(*self._consumer.assignment())


class KafkaLog:
    """One topic on a Kafka cluster."""

    def __init__(self, backend: KafkaLogBackend, role: str, kafka_topic: str, partitions: int):
        self._backend = backend
        self._role = role
        self.kafka_topic = kafka_topic
        self._partitions = partitions
        self._send_lock = asyncio.Lock()
        self._last_ts = dict.fromkeys(range(partitions), 0)  # by this process, per partition
        self._known_ends = dict.fromkeys(range(partitions), 0)  # highest end seen
        self._idle_readers: dict[bool, list[_Reader]] = {False: [], True: []}  # by bulk
        self._reader_slots = asyncio.Semaphore(READERS_PER_TOPIC)

    @property
    def topic(self) -> str:
        return self._role

    @property
    def partitions(self) -> int:
        return self._partitions

    def partition_for(self, key: str) -> int:
        if self._backend.config.partitioner == "crc32":
            return zlib.crc32(key.encode()) % self._partitions
        return murmur2_partition(key, self._partitions)

    # -- append ---------------------------------------------------------------------------

    async def append(self, entries: Sequence[Entry], sync: bool = True) -> list[Position]:
        # sync is not used: every produce waits for acks=all.
        if not entries:
            return []
        tracer = self._backend.tracer
        if tracer is None:
            return await self._append(entries)
        span = kafka_span(tracer, "send", self.kafka_topic, None, None, len(entries))
        with trace.use_span(span, end_on_exit=True):
            positions = await self._append(entries)
            if len({p for p, _ in positions}) == 1:  # one partition: say where they went
                span.set_attribute(PARTITION_ID, str(positions[0][0]))
                span.set_attribute(KAFKA_OFFSET, positions[0][1])
            return positions

    async def _append(self, entries: Sequence[Entry]) -> list[Position]:
        parts = [self.partition_for(e.key) if e.partition is None else e.partition
                 for e in entries]  # fmt: skip
        self._check_appendable(entries, parts)
        producer = self._backend.producer()
        async with self._send_lock:
            deliveries = await self._enqueue(producer, entries, parts)
        positions = await self._delivered(deliveries, parts)
        for partition, offset in positions:
            self._known_ends[partition] = max(self._known_ends[partition], offset + 1)
        return positions

    def _check_appendable(self, entries: Sequence[Entry], parts: list[int]) -> None:
        """Refuse the whole append, before anything is sent, if any entry cannot go."""
        limit = self._backend.config.max_message_bytes
        for index, (entry, part) in enumerate(zip(entries, parts, strict=True)):
            self._check_partition(part)
            size = DefaultRecordBatchBuilder.estimate_size_in_bytes(
                entry.key.encode(), entry.value, []
            )
            if size > limit:
                raise LogError(
                    f"entry {index} for {self.kafka_topic}[{part}] is {size} bytes; "
                    f"max_message_bytes is {limit}"
                )

    async def _enqueue(
        self, producer: AIOKafkaProducer, entries: Sequence[Entry], parts: list[int]
    ) -> list[asyncio.Future[object]]:
        """Queue every entry in the producer, in order; returns their delivery futures.

        Record time never goes backwards within a partition for this process's appends
        (as in the SQLite backend), so time -> offset lookups can binary-search.
        """
        deliveries: list[asyncio.Future[object]] = []
        now = int(time.time() * 1000)
        try:
            for entry, part in zip(entries, parts, strict=True):
                stamp = max(entry.timestamp_ms if entry.timestamp_ms is not None else now,
                            self._last_ts[part])  # fmt: skip
                self._last_ts[part] = stamp
                deliveries.append(await producer.send(
                    self.kafka_topic, entry.value, key=entry.key.encode(), partition=part,
                    timestamp_ms=stamp,
                ))  # fmt: skip
        except KafkaError as error:
            _forget(deliveries)
            if deliveries:  # some entries are on their way: they may land
                raise AppendOutcomeUnknown(
                    f"append to {self.kafka_topic}: {len(deliveries)} of {len(entries)} "
                    f"records were queued when sending failed: {error!r}"
                ) from error
            raise LogError(f"append to {self.kafka_topic} failed: {error!r}") from error
        return deliveries

    async def _delivered(
        self, deliveries: list[asyncio.Future[object]], parts: list[int]
    ) -> list[Position]:
        """Wait for every delivery report; AppendOutcomeUnknown if any may or may not have
        landed (a timeout, or some landed and some failed), LogError if none landed."""
        timeout_s = 2 * self._backend.config.request_timeout_ms / 1000  # aiokafka's own first
        pending = await _settled(deliveries, parts, timeout_s)
        _forget(pending)
        if pending:
            raise AppendOutcomeUnknown(
                f"append to {self.kafka_topic}: {len(pending)} records not acknowledged "
                f"within {timeout_s:g} s"
            )
        outcomes = [(part, _failure(fut)) for fut, part in zip(deliveries, parts, strict=True)]
        failures = [(part, error) for part, error in outcomes if error is not None]
        if not failures:
            reports = [fut.result() for fut in deliveries]
            return [(report.partition, report.offset) for report in reports]  # type: ignore[attr-defined]  # RecordMetadata
        part, error = failures[0]
        where = f"{self.kafka_topic}[{part}]"
        if len(failures) < len(deliveries) or any(_maybe_written(e) for _, e in failures):
            raise AppendOutcomeUnknown(
                f"append to {where}: {len(failures)} of {len(deliveries)} records failed "
                f"({error!r}); others may have landed, retry with the same ids"
            ) from error
        raise LogError(f"append to {where} failed: {error!r}") from error

    # -- read, end_offsets, offset_for_time -----------------------------------------------

    async def read(self, partition: int, offset: int, limit: int = 1000) -> list[Record]:
        self._check_partition(partition)
        if offset < 0:
            raise LogError(f"offset must be >= 0, got {offset}")
        if limit < 1:
            return []
        bulk = min(limit, self._known_ends[partition] - offset) >= BULK_READ
        async with self._reader(bulk) as reader:
            records, starved = await reader.read(partition, offset, limit,
                                                 None if bulk else STARVED_READ_S)
        if starved:  # the rest with a reader whose fetches wait long enough to bring it
            start = records[-1].offset + 1 if records else offset
            async with self._reader(bulk=True) as reader:
                rest, _ = await reader.read(partition, start, limit - len(records))
            records += rest
        if records:
            end = records[-1].offset + 1
            self._known_ends[partition] = max(self._known_ends[partition], end)
        return records

    async def end_offsets(self) -> dict[int, int]:
        async with self._reader() as reader:
            ends = await reader.end_offsets(self._known_ends)
        self._known_ends.update(ends)
        return ends

    async def offset_for_time(self, partition: int, timestamp_ms: int) -> int | None:
        """The first offset with a timestamp at or after timestamp_ms, or None.

        Not offsets_for_times: the test broker answers it from its own write time per batch.
        Instead a binary search over record timestamps (one small fetch per step), which
        assumes timestamps do not decrease within a partition. jobledger's producers keep
        that per process (see `_enqueue`); records from several processes or foreign
        producers whose clocks differ may break it by up to the clock skew, and the answer
        may then be that many milliseconds' worth of records off.
        """
        self._check_partition(partition)
        lo, hi = 0, (await self.end_offsets())[partition] - 1
        found = None
        while lo <= hi:
            mid = (lo + hi) // 2
            at_or_after = await self.read(partition, mid, limit=1)
            if not at_or_after:  # nothing at mid or later (records removed by compaction)
                hi = mid - 1
            elif at_or_after[0].timestamp_ms >= timestamp_ms:
                found, hi = at_or_after[0].offset, mid - 1
            else:
                lo = at_or_after[0].offset + 1
        return found

    @asynccontextmanager
    async def _reader(self, bulk: bool = False) -> AsyncIterator[_Reader]:
        async with self._reader_slots:
            self._backend.check_open()
            idle = self._idle_readers[bulk]
            reader = idle.pop() if idle else await self._new_reader(bulk)
            try:
                yield reader
            finally:
                reader.release()
                idle.append(reader)

    async def _new_reader(self, bulk: bool) -> _Reader:
        """A consumer for reads only. The fetch that follows a read which reached the end
        waits fetch_max_wait_ms for records that will not come, and delays the reader's
        next use: 1 ms keeps that short. But the test broker (Tansu, in memory) answers a
        fetch with what it gathered within fetch_max_wait_ms, and it lists every batch of
        the partition for each fetch: with 2,000 batches a 1 ms fetch brought one record,
        with 16,000 none at all (10 ms: all 40 asked for). R26's 10-minute soak: a worker's
        fold of 5,000 records, then of 40, did not end within 30 s, so it never took its
        partitions over. Bulk reads (folds, catch-ups), and short reads whose fetches
        starve (STARVED_READ_S), use readers that wait longer: on Apache Kafka a fetch with
        records at hand answers at once whatever the wait."""
        wait = BULK_READER_WAIT_MS if bulk else READER_WAIT_MS
        consumer = await self._backend.consumer(fetch_max_wait_ms=wait)
        return _Reader(consumer, self)

    # -- tail -----------------------------------------------------------------------------

    async def tail(
        self, positions: Mapping[int, int], limit: int = 5000
    ) -> AsyncIterator[list[Record]]:
        """Batches of records from `positions` on. A consumer of its own long-polls the
        broker: getmany returns as soon as a fetch brings records, so nothing sleeps."""
        async for batches in self._backend.tail({self._role: positions}, limit):
            yield batches[self._role]

    # -- helpers --------------------------------------------------------------------------

    def _check_partition(self, partition: int) -> None:
        if not 0 <= partition < self._partitions:
            raise LogError(
                f"partition {partition} out of range for topic {self.kafka_topic!r} "
                f"({self._partitions} partitions)"
            )

    def deadline(self) -> float:
        return time.monotonic() + self._backend.config.request_timeout_ms / 1000

    def check_deadline(self, deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            raise LogError(
                f"{what} on {self.kafka_topic}: no answer from Kafka at "
                f"{self._backend.config.bootstrap_servers} within "
                f"{self._backend.config.request_timeout_ms} ms"
            )

    def closed(self) -> None:
        """The backend stopped every consumer, the readers' too."""
        for idle in self._idle_readers.values():
            idle.clear()


class _DeliveryCancelled(KafkaError):  # type: ignore[misc]  # aiokafka has no types: Any
    """The producer stopped (the backend was closed) with the record possibly sent."""


async def _settled(deliveries: list[asyncio.Future[object]], parts: list[int],
                   timeout_s: float) -> list[asyncio.Future[object]]:  # fmt: skip
    """Wait until every delivery is done, at most timeout_s; return those still pending.

    Waits on the last delivery of each partition first: aiokafka sends a partition's
    batches one at a time, in order (retries included), so the earlier ones are done by
    then. That spares a callback and a turn of the loop per record; any delivery still
    pending after all (none, by aiokafka's order) is waited for as well."""
    deadline = time.monotonic() + timeout_s
    last = dict(zip(parts, deliveries, strict=True))
    await asyncio.wait(last.values(), timeout=timeout_s)
    pending = [delivery for delivery in deliveries if not delivery.done()]
    if pending:
        await asyncio.wait(pending, timeout=max(0.0, deadline - time.monotonic()))
        pending = [delivery for delivery in pending if not delivery.done()]
    return pending


def _failure(delivery: asyncio.Future[object]) -> BaseException | None:
    if delivery.cancelled():
        return _DeliveryCancelled("delivery cancelled: the producer stopped")
    return delivery.exception()


def _maybe_written(error: BaseException | None) -> bool:
    """Whether a failed delivery may still have been written (so: outcome unknown)."""
    return isinstance(
        error,
        (KafkaTimeoutError, RequestTimedOutError, KafkaConnectionError,
         NotEnoughReplicasAfterAppendError, _DeliveryCancelled),
    )  # fmt: skip


def _forget(futures: Iterable[asyncio.Future[object]]) -> None:
    """Retrieve the outcome of deliveries nobody awaits any more, so none is reported as
    'exception never retrieved'."""
    for future in futures:
        future.add_done_callback(lambda f: f.cancelled() or f.exception())


def producer_start_error(error: RuntimeError, config: KafkaConfig) -> LogError:
    """What a failed producer start means, and what to do about it. aiokafka raises a
    RuntimeError of its own when a compression codec's library is missing, and every
    KafkaError is a RuntimeError too, so the Kafka errors are told apart first. With
    idempotence on, the start's one request of its own is InitProducerId: a broker that
    cannot do it answers UnknownError (the test broker, Kafka before 0.11), one that does
    not allow it ClusterAuthorizationFailed."""
    servers = config.bootstrap_servers
    if isinstance(error, KafkaConnectionError | KafkaTimeoutError | RequestTimedOutError):
        return LogError(f"cannot reach Kafka at {servers}: {error}")
    if isinstance(error, KafkaError) and config.idempotent:
        return LogError(
            f"the Kafka broker at {servers} refused the idempotent producer ({error}): use a "
            "broker that allows it, or turn it off (--no-idempotence, JOBLEDGER_IDEMPOTENCE=0, "
            "KafkaConfig(idempotent=False)), which lets a retried append be written twice")
    if isinstance(error, KafkaError):
        return LogError(f"cannot start the producer for {servers}: {error}")
    return LogError(f"compression {config.compression!r}: {error}: install its codec "
                    "(pip install 'aiokafka[lz4,snappy,zstd]'), or choose another")


class _ToldByStart(logging.Filter):
    """aiokafka's sender logs a refused InitProducerId before producer.start() raises it;
    the raised error is reported (producer_start_error), so the log line only repeats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Unexpected error during InitProducerId")


_SENDER_LOG = logging.getLogger("aiokafka.producer.sender")
_told_by_start = _ToldByStart()


class KafkaLogBackend:
    """jobledger's topics on one Kafka cluster. Use `await KafkaLogBackend.open(config,
    topics)`; `topics` maps role -> partitions (`jobledger_topics(config)` for the app)."""

    def __init__(self, config: KafkaConfig):
        self.config = config
        self._admin: AIOKafkaAdminClient | None = None
        self._producer: AIOKafkaProducer | None = None
        self._topics: dict[str, KafkaLog] = {}
        self._consumers: set[AIOKafkaConsumer] = set()
        self.closed = False
        self.tracer: Tracer | None = None  # Kafka send and receive spans; None: off

    @classmethod
    async def open(cls, config: KafkaConfig, topics: Mapping[str, int]) -> KafkaLogBackend:
        """Connect, create the missing topics, check the existing ones, start the producer."""
        for role, count in topics.items():
            if not isinstance(count, int) or count < 1:
                raise ValueError(f"topics[{role!r}]: partitions must be >= 1, got {count!r}")
            config.topic_name(role)
        self = cls(config)
        try:
            async with asyncio.timeout(config.request_timeout_ms / 1000):
                await self._start_admin()
                counts = await self._ensure_topics(topics)
                await self._start_producer()
        except TimeoutError:
            await self.close()
            raise LogError(
                f"Kafka at {config.bootstrap_servers} did not answer within "
                f"{config.request_timeout_ms} ms"
            ) from None
        except BaseException:
            await self.close()
            raise
        for role, count in counts.items():
            self._topics[role] = KafkaLog(self, role, config.topic_name(role), count)
        return self

    async def _start_admin(self) -> None:
        self._admin = AIOKafkaAdminClient(**self.config.client_settings())
        try:
            await self._admin.start()
        except KafkaError as error:
            raise LogError(
                f"cannot reach Kafka at {self.config.bootstrap_servers}: {error!r}"
            ) from error

    async def _ensure_topics(self, topics: Mapping[str, int]) -> dict[str, int]:
        """Create what is missing, then return each topic's actual partition count.

        Create first and describe after: a metadata request for a missing topic makes some
        brokers auto-create it with their default partition count.
        """
        assert self._admin is not None
        names = {role: self.config.topic_name(role) for role in topics}
        new = [
            NewTopic(names[role], count, self.config.replication_factor,
                     topic_configs=self.config.topic_configs())
            for role, count in topics.items()
        ]  # fmt: skip
        if new:
            response = await self._admin.create_topics(new)
            for name, code, *message in response.topic_errors:
                if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS, checked below
                    raise LogError(f"cannot create topic {name!r}: error {code} {message}")
        counts = await self._partition_counts(list(names.values()))
        for role, want in topics.items():
            have = counts[names[role]]
            if have < want and self.config.partitioner != "crc32":
                raise LogError(
                    f"topic {names[role]!r} has {have} partitions; jobledger needs at least "
                    f"{want} (add partitions with kafka-topics --alter, or lower `partitions`)"
                )
        return {role: counts[names[role]] for role in topics}

    async def _partition_counts(self, names: list[str]) -> dict[str, int]:
        """Partitions per topic, waiting out a just-created topic's metadata propagating."""
        assert self._admin is not None
        while True:
            described = await self._admin.describe_topics(names)
            counts: dict[str, int] = {}
            for topic in described:
                code = topic["error_code"]
                if code == 0 and topic["partitions"]:
                    counts[topic["topic"]] = len(topic["partitions"])
                elif code not in (3, 5):  # UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE
                    raise LogError(f"cannot describe topic {topic['topic']!r}: error {code}")
            if len(counts) == len(names):
                return counts
            await asyncio.sleep(0.05)  # metadata propagation; bounded by open()'s timeout

    async def _start_producer(self) -> None:
        config = self.config
        try:
            self._producer = AIOKafkaProducer(
                **config.client_settings(),
                acks="all",
                enable_idempotence=config.idempotent,
                compression_type=None if config.compression == "none" else config.compression,
                max_request_size=config.max_message_bytes,
                # A whole append to one partition fits one batch in the common case, so
                # other processes' records cannot land in the middle of it.
                max_batch_size=config.max_message_bytes,
            )
            _SENDER_LOG.addFilter(_told_by_start)
            try:
                await self._producer.start()
            finally:
                _SENDER_LOG.removeFilter(_told_by_start)
        except RuntimeError as error:  # KafkaError is one too
            raise producer_start_error(error, config) from error

    async def identity(self) -> LogIdentity | None:
        """The cluster's id and the topic prefix: one prefix's topics on one cluster are
        one log. The epoch is 0, and topics deleted and made again under the same names
        keep the identity: the Metadata versions aiokafka speaks (up to v5) give neither a
        topic id (v10) nor a creation time (docs/kafka.md). None: no cluster id (v0-v1)."""
        self.check_open()
        assert self._admin is not None
        try:
            cluster = await self._admin.describe_cluster()
        except KafkaError as error:
            raise LogError(f"cannot describe the Kafka cluster at "
                           f"{self.config.bootstrap_servers}: {error!r}") from error
        cluster_id = cluster.get("cluster_id")
        if not cluster_id:
            return None
        return LogIdentity(f"kafka:{cluster_id}/{self.config.topic_prefix}", 0)

    def check_open(self) -> None:
        if self.closed:
            raise LogError(f"the Kafka log at {self.config.bootstrap_servers} is closed")

    async def consumer(self, fetch_max_wait_ms: int) -> AIOKafkaConsumer:
        """A started consumer without a group, for manual assignment."""
        self.check_open()
        consumer = AIOKafkaConsumer(
            **self.config.client_settings(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="none",  # an offset out of range is an error, never a jump
            fetch_max_wait_ms=fetch_max_wait_ms,
            max_partition_fetch_bytes=self.config.max_message_bytes + FETCH_OVERHEAD,
        )
        self._consumers.add(consumer)
        try:
            await consumer.start()
        except BaseException as error:
            self._consumers.discard(consumer)
            await consumer.stop()
            if isinstance(error, KafkaError):
                raise LogError(
                    f"cannot reach Kafka at {self.config.bootstrap_servers}: {error!r}"
                ) from error
            raise
        return consumer

    async def tail(
        self, positions: Mapping[str, Mapping[int, int]], limit: int = 5000
    ) -> AsyncIterator[dict[str, list[Record]]]:
        """KafkaLog.tail of several topics at once: `positions` maps role -> partition ->
        offset; each batch maps the roles it has records of to them. One consumer for
        them all, so one fetch request asks every topic: an API node follows four topics,
        and a consumer per topic polled the broker four times as often, mostly for topics
        without news, which kept an idle API node and the broker busy
        (docs/performance.md, "Figures behind the code")."""
        kafka_topics = {self.config.topic_name(role): role for role in positions}
        tps = {}
        for role, starts in positions.items():
            log = self.topic(role)
            for partition, offset in starts.items():
                log._check_partition(partition)
                tps[TopicPartition(log.kafka_topic, partition)] = offset
        gaps = {topic: Gaps(self.topic(role), {tp.partition: o for tp, o in tps.items()
                                                if tp.topic == topic})
                for topic, role in kafka_topics.items()}  # fmt: skip
        consumer = await self.consumer(self.config.fetch_max_wait_ms)
        try:
            consumer.assign(list(tps))
            for tp, offset in tps.items():
                consumer.seek(tp, offset)
            while True:
                try:
                    fetched = await consumer.getmany(*tps, timeout_ms=TAIL_POLL_MS,
                                                     max_records=limit)  # fmt: skip
                except OffsetOutOfRangeError as error:
                    raise LogError(f"tail of {', '.join(kafka_topics)}: {error!r}") from error
                batches: dict[str, list[Record]] = {}
                for tp in sorted(fetched):
                    if fetched[tp]:
                        batch = batches.setdefault(kafka_topics[tp.topic], [])
                        batch += await gaps[tp.topic].fill(list(map(_to_record, fetched[tp])))
                        if self.tracer is not None:
                            first = fetched[tp][0]
                            kafka_span(self.tracer, "receive", tp.topic, tp.partition,
                                       first.offset, len(fetched[tp])).end()
                if batches:
                    yield batches
        finally:
            await self.stop_consumer(consumer)

    async def stop_consumer(self, consumer: AIOKafkaConsumer) -> None:
        self._consumers.discard(consumer)
        await consumer.stop()

    def producer(self) -> AIOKafkaProducer:
        self.check_open()
        assert self._producer is not None  # started by open()
        return self._producer

    def topic(self, name: str) -> KafkaLog:
        try:
            return self._topics[name]
        except KeyError:
            raise LogError(
                f"topic {name!r} was not opened on Kafka at {self.config.bootstrap_servers}"
            ) from None

    async def close(self) -> None:
        """Stop the producer (after its queued records are sent), every consumer and the
        admin client. Tails still running end with an error on their next fetch."""
        self.closed = True
        for log in self._topics.values():
            log.closed()
        for consumer in list(self._consumers):
            await self.stop_consumer(consumer)
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
        admin, self._admin = self._admin, None
        if admin is not None:
            await admin.close()
