"""The Kafka Log backend against a real Kafka-protocol broker (Tansu, started by the tests):
the shared contract, plus what only the Kafka backend promises.

Each test gets topics under a prefix of its own on the module's broker. The producer is not
idempotent here because the test broker cannot do idempotence (docs/kafka.md).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from aiokafka.structs import ConsumerRecord

from jobledger.schemas import Actor, ActorKind, Envelope
from jobledger.schemas.codec import decode, encode
from jobledger.schemas.jobs import JobEnqueued
from jobledger.services.log.kafka import (
    DEAD_LETTER,
    JOBS,
    SCHEDULES,
    Gaps,
    KafkaConfig,
    KafkaLog,
    KafkaLogBackend,
    _Reader,
    _settled,
    jobledger_topics,
    murmur2,
    murmur2_partition,
)
from jobledger.services.log.protocol import Entry, LogBackend, LogError
from tests.support.kafka_broker import TansuBroker, unique_prefix
from tests.support.log_contract import LogContract

PARTITIONS: Mapping[str, int] = {"a": 3, "b": 1}
KCAT_DEADLINE_S = 30.0


def _config(broker: TansuBroker, **overrides: object) -> KafkaConfig:
    settings: dict[str, object] = {
        "bootstrap_servers": broker.bootstrap,
        "topic_prefix": unique_prefix(),
        "idempotent": False,  # the test broker refuses InitProducerId
        "request_timeout_ms": 10_000,
    }
    return KafkaConfig(**{**settings, **overrides})  # type: ignore[arg-type]


class TestKafkaLog(LogContract):
    wait_s = 10.0  # a first fetch makes a connection and loads metadata

    @pytest.fixture
    async def backend(self, kafka_broker: TansuBroker) -> AsyncIterator[LogBackend]:
        backend = await KafkaLogBackend.open(_config(kafka_broker), PARTITIONS)
        yield backend
        await backend.close()
        kafka_broker.check_log()


@pytest.fixture
async def admin(kafka_broker: TansuBroker) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    await client.start()
    yield client
    await client.close()


# --- topics --------------------------------------------------------------------------------


async def test_a_record_a_fetch_skipped_is_read_again(kafka_broker: TansuBroker) -> None:
    """A fetch can bring offset n + 1 before n (the test broker, two producers appending
    to one partition): the consumer's position moves past n, and an owner would never
    see that job's JobEnqueued. Gaps puts such records back, in order."""
    backend = await KafkaLogBackend.open(_config(kafka_broker), PARTITIONS)
    try:
        log = backend.topic("b")
        await log.append([Entry(f"k{i}", f"v{i}".encode(), partition=0) for i in range(10)])
        records = await log.read(0, 0, 10)
        gaps = Gaps(log, {0: 0})
        fetched = [r for r in records if r.offset not in (0, 5, 6)]  # holes at the start and inside
        filled = await gaps.fill(fetched)
        assert [(r.offset, r.value) for r in filled] == [(r.offset, r.value) for r in records]
        again = await gaps.fill([records[9]])  # already had: passed on, nothing read
        assert [r.offset for r in again] == [9] and gaps.next[0] == 10
    finally:
        await backend.close()


async def test_topics_are_created_with_their_partitions_and_configs(
    kafka_broker: TansuBroker, admin: AIOKafkaAdminClient
) -> None:
    config = _config(kafka_broker, partitions=5, max_message_bytes=3_000_000)
    backend = await KafkaLogBackend.open(config, jobledger_topics(config))
    try:
        assert {role: backend.topic(role).partitions for role in jobledger_topics(config)} == {
            "jobs": 5, "logs": 5, "workers": 5, "schedules": 5, "security": 1, "dead_letter": 1,
        }  # fmt: skip
    finally:
        await backend.close()
    names = [config.topic_name(role) for role in (JOBS, SCHEDULES, DEAD_LETTER)]
    described = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
    assert described == dict(zip(names, (5, 5, 1), strict=True))

    # Requested, not exercised: the test broker stores configs but never deletes anything.
    # Every topic is history to rebuild from, schedules too (its records are events, so
    # compaction would drop all but each schedule's newest one).
    for role in jobledger_topics(config):
        configs = await _topic_configs(admin, config.topic_name(role))
        assert (configs["cleanup.policy"], configs["retention.ms"]) == ("delete", "-1"), role
        assert configs["max.message.bytes"] == "3000000", role
        assert configs["message.timestamp.type"] == "CreateTime", role


async def _topic_configs(admin: AIOKafkaAdminClient, topic: str) -> dict[str, str]:
    [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    [(_code, _message, _type, _name, entries)] = response.resources
    return {entry[0]: entry[1] for entry in entries}


async def test_an_existing_topic_with_too_few_partitions_is_refused(
    kafka_broker: TansuBroker,
) -> None:
    config = _config(kafka_broker)
    first = await KafkaLogBackend.open(config, {"a": 2})
    await first.close()
    with pytest.raises(LogError, match=rf"{config.topic_name('a')}.* 2 partitions.* at least 3"):
        await KafkaLogBackend.open(config, {"a": 3})
    # Fewer than it has is fine: the topic's real count is used, as any Kafka producer would.
    again = await KafkaLogBackend.open(config, {"a": 1})
    try:
        assert again.topic("a").partitions == 2
    finally:
        await again.close()


async def test_reopening_keeps_records_and_continues_offsets(kafka_broker: TansuBroker) -> None:
    config = _config(kafka_broker)
    backend = await KafkaLogBackend.open(config, PARTITIONS)
    a = backend.topic("a")
    await a.append([Entry(f"k{i}", b"a%d" % i, partition=i % 3) for i in range(7)])
    before = {p: await a.read(p, 0) for p in range(3)}
    await backend.close()

    backend = await KafkaLogBackend.open(config, PARTITIONS)
    try:
        a = backend.topic("a")
        assert {p: await a.read(p, 0) for p in range(3)} == before
        assert await a.end_offsets() == {0: 3, 1: 2, 2: 2}
        assert await a.append([Entry("k", b"next", partition=1)]) == [(1, 2)]
    finally:
        await backend.close()


async def test_unknown_topic_raises_log_error(kafka_broker: TansuBroker) -> None:
    backend = await KafkaLogBackend.open(_config(kafka_broker), PARTITIONS)
    try:
        with pytest.raises(LogError, match="'c'"):
            backend.topic("c")
    finally:
        await backend.close()


# --- partitioning --------------------------------------------------------------------------


async def test_partition_for_is_the_partition_a_plain_kafka_producer_picks(
    kafka_broker: TansuBroker,
) -> None:
    config = _config(kafka_broker)
    backend = await KafkaLogBackend.open(config, {"jobs": 12})
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    await producer.start()
    try:
        log = backend.topic("jobs")
        keys = [f"job-{i}" for i in range(60)] + ["", "ключ/🙂", "0192a7c4-1b1e-7c3e-9a55"]
        for key in keys:
            # No partition given: aiokafka's default partitioner, like Kafka's Java client.
            meta = await producer.send_and_wait(log.kafka_topic, b"v", key=key.encode())
            assert meta.partition == log.partition_for(key), key
        assert {log.partition_for(k) for k in keys} == set(range(12))
    finally:
        await producer.stop()
        await backend.close()


# Java's Utils.murmur2 of these keys, from Kafka's UtilsTest.testMurmur2.
JAVA_MURMUR2 = {
    "21": -973932308,
    "foobar": -790332482,
    "a-little-bit-long-string": -985981536,
    "a-little-bit-longer-string": -1486304829,
    "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    "abc": 479470107,
}


@pytest.mark.parametrize("partitions", [1, 3, 12, 100])
def test_murmur2_partition_is_javas_default_partitioner(partitions: int) -> None:
    # The Java client: Utils.toPositive(Utils.murmur2(keyBytes)) % numPartitions.
    for key, java_hash in JAVA_MURMUR2.items():
        assert murmur2_partition(key, partitions) == (java_hash & 0x7FFFFFFF) % partitions, key


def test_murmur2_agrees_with_aiokafkas() -> None:
    """Every length (so every tail of 0-3 bytes) and every byte value."""
    rng = random.Random(7)
    keys = [bytes(rng.randrange(256) for _ in range(length))
            for length in range(70) for _ in range(20)]  # fmt: skip
    keys += [str(uuid.UUID(int=rng.getrandbits(128))).encode() for _ in range(200)]
    for key in keys:
        assert murmur2(key) == aiokafka_murmur2(key), key


async def test_an_append_waits_for_every_delivery_not_only_each_partitions_last() -> None:
    loop = asyncio.get_running_loop()
    early, last, other = (loop.create_future() for _ in range(3))
    last.set_result(None)
    other.set_result(None)
    waiting = asyncio.ensure_future(_settled([early, last, other], [0, 0, 1], 30.0))
    await asyncio.sleep(0)  # one turn: _settled waits on the partitions' last deliveries
    await asyncio.sleep(0)
    assert not waiting.done()  # `early` is not delivered yet
    early.set_result(None)
    assert await waiting == []
    never = loop.create_future()
    assert await _settled([early, never], [2, 2], 0.01) == [never]  # bounded


async def test_a_job_enqueued_with_kcat_lands_where_jobledger_looks_for_it(
    kcat_broker: TansuBroker,
) -> None:
    kcat = shutil.which("kcat")
    assert kcat, "kcat is not installed: apt-get install -y kcat"
    config = _config(kcat_broker)
    backend = await KafkaLogBackend.open(config, {"jobs": 6})
    try:
        log = backend.topic("jobs")
        envelopes = [_enqueued(f"kcat-job-{i}") for i in range(8)]
        for env in envelopes:
            await _kcat_produce(kcat, kcat_broker, log.kafka_topic, env.key, encode(env))
        for env in envelopes:
            partition = log.partition_for(env.key)
            records = [r for r in await log.read(partition, 0) if r.key == env.key]
            assert len(records) == 1, f"{env.key} not on partition {partition}"
            [record] = records
            decoded = decode(record.value, record.partition, record.offset)
            assert decoded.event == env.event
            assert (decoded.id, decoded.key, decoded.time) == (env.id, env.key, env.time)
        # The keys spread over partitions, so landing right is not a coincidence of one.
        assert len({log.partition_for(env.key) for env in envelopes}) > 1
    finally:
        await backend.close()


def _enqueued(job_id: str) -> Envelope:
    return Envelope(
        id=f"ev-{job_id}",
        key=job_id,
        time=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        actor=Actor(ActorKind.CLIENT, "kcat"),
        event=JobEnqueued(job_id=job_id, task_type="send_email"),
    )


async def _kcat_produce(kcat: str, broker: TansuBroker, topic: str, key: str, value: bytes) -> None:
    """Publish one record with kcat, as a non-Python producer would. librdkafka's default
    partitioner is CRC32-based; murmur2_random is the Java client's (and jobledger's)."""
    assert b"\n" not in value  # kcat -P splits its input at newlines
    proc = await asyncio.create_subprocess_exec(
        kcat, "-P", "-b", broker.bootstrap, "-t", topic, "-k", key,
        "-X", "topic.partitioner=murmur2_random", "-X", "acks=all",
        stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        _, err = await asyncio.wait_for(proc.communicate(value + b"\n"), KCAT_DEADLINE_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()


# --- appends -------------------------------------------------------------------------------


async def test_an_oversized_entry_refuses_the_whole_append(kafka_broker: TansuBroker) -> None:
    backend = await KafkaLogBackend.open(_config(kafka_broker, max_message_bytes=10_000), {"b": 1})
    try:
        log = backend.topic("b")
        with pytest.raises(LogError, match=r"entry 1 .* max_message_bytes is 10000"):
            await log.append([Entry("k", b"small"), Entry("k", b"x" * 20_000)])
        assert await log.end_offsets() == {0: 0}
    finally:
        await backend.close()


async def test_end_offsets_count_records_of_one_large_batch(kafka_broker: TansuBroker) -> None:
    # One producer batch of 25 records: the test broker's ListOffsets "latest" says 1 here.
    backend = await KafkaLogBackend.open(_config(kafka_broker), {"b": 1})
    try:
        log = backend.topic("b")
        await log.append([Entry("k", b"v%d" % i) for i in range(25)])
        assert await log.end_offsets() == {0: 25}
        assert [r.offset for r in await log.read(0, 20)] == [20, 21, 22, 23, 24]
    finally:
        await backend.close()


async def test_offset_for_time_over_many_batches(kafka_broker: TansuBroker) -> None:
    backend = await KafkaLogBackend.open(_config(kafka_broker), {"b": 1})
    try:
        log = backend.topic("b")
        for batch in range(10):  # ten appends: ten batches, each record 10 ms after the last
            await log.append([Entry("k", b"v", timestamp_ms=1_000 + 10 * (10 * batch + i))
                              for i in range(10)])  # fmt: skip
        assert await log.offset_for_time(0, 0) == 0
        assert await log.offset_for_time(0, 1_000 + 10 * 37) == 37
        assert await log.offset_for_time(0, 1_000 + 10 * 37 - 5) == 37
        assert await log.offset_for_time(0, 1_000 + 10 * 99) == 99
        assert await log.offset_for_time(0, 1_000 + 10 * 99 + 1) is None
    finally:
        await backend.close()


async def test_an_earlier_timestamp_after_a_later_one_is_raised_to_it(
    kafka_broker: TansuBroker,
) -> None:
    # Per partition, record time never goes backwards (as in the SQLite backend), which is
    # what lets offset_for_time binary-search.
    backend = await KafkaLogBackend.open(_config(kafka_broker), {"b": 1})
    try:
        log = backend.topic("b")
        await log.append([Entry("k", b"late", timestamp_ms=5_000)])
        await log.append([Entry("k", b"early", timestamp_ms=4_000)])
        assert [r.timestamp_ms for r in await log.read(0, 0)] == [5_000, 5_000]
    finally:
        await backend.close()


# --- configuration and connection ----------------------------------------------------------


async def test_an_unreachable_broker_gives_a_clear_error_in_bounded_time() -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = KafkaConfig(f"127.0.0.1:{port}", idempotent=False, request_timeout_ms=3_000)
    started = time.monotonic()
    with pytest.raises(LogError, match=f"127.0.0.1:{port}"):
        await KafkaLogBackend.open(config, PARTITIONS)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("bootstrap_servers", " "),
        ("topic_prefix", "job ledger/"),
        ("partitions", 0),
        ("replication_factor", -1),
        ("compression", "brotli"),
        ("max_message_bytes", 0),
        ("request_timeout_ms", 0),
        ("fetch_max_wait_ms", 0),
        ("min_insync_replicas", 2),  # more than replication_factor 1
        ("client_id", ""),
    ],
)
def test_bad_settings_are_refused_naming_the_field(field: str, value: object) -> None:
    settings: dict[str, object] = {"bootstrap_servers": "127.0.0.1:9092", field: value}
    with pytest.raises(ValueError, match=field):
        KafkaConfig(**settings)  # type: ignore[arg-type]


def test_durable_defaults() -> None:
    config = KafkaConfig("127.0.0.1:9092")
    assert config.idempotent is True
    assert config.topic_prefix == "jobledger."
    assert config.compression == "none"


async def test_a_long_read_of_many_small_batches_takes_few_fetches(
    kafka_broker: TansuBroker,
) -> None:
    """The test broker answers a fetch with what it gathered within fetch_max_wait_ms and
    lists every batch of the partition for each fetch. Reads used 1 ms: with a few thousand
    batches a fetch brought one record, and a fold of 5,000 records in R26's 10-minute soak
    did not end within the request timeout. A bulk read waits longer (_new_reader)."""
    config = _config(kafka_broker, request_timeout_ms=3_000)
    backend = await KafkaLogBackend.open(config, {"b": 1})
    topic = config.topic_name("b")
    producers = [AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap) for _ in range(8)]
    try:
        await asyncio.gather(*(p.start() for p in producers))

        async def one_batch_a_send(producer: AIOKafkaProducer) -> None:
            for _ in range(250):
                await producer.send_and_wait(topic, b"v" * 200, partition=0)

        await asyncio.gather(*(one_batch_a_send(p) for p in producers))
        log = backend.topic("b")
        assert await log.end_offsets() == {0: 2000}
        started = time.monotonic()
        records = await log.read(0, 0, limit=2000)  # before: LogError, no answer within 3 s
        assert len(records) == 2000, f"{len(records)} in {time.monotonic() - started:.1f} s"
    finally:
        await asyncio.gather(*(p.stop() for p in producers))
        await backend.close()


class _FetchesBringNothing:
    """A reader's consumer whose fetches bring no record although the partition's highwater
    lies beyond the position: the test broker answering a 1 ms fetch of a partition of
    16,000 batches (KafkaLog._new_reader). `serving`: it brings them (a longer wait)."""

    def __init__(self, records: int, serving: bool):
        self.records, self.serving, self.at = records, serving, 0

    def assign(self, tps: list[TopicPartition]) -> None:
        pass

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.at = offset

    def pause(self, *tps: TopicPartition) -> None:
        pass

    def assignment(self) -> set[TopicPartition]:
        return set()

    def highwater(self, tp: TopicPartition) -> int:
        return self.records

    async def position(self, tp: TopicPartition) -> int:
        return self.at

    async def getmany(self, tp: TopicPartition, timeout_ms: int,
                      max_records: int) -> dict[TopicPartition, list[ConsumerRecord]]:  # fmt: skip
        await asyncio.sleep(timeout_ms / 1000)
        if not self.serving:
            return {}
        end = min(self.records, self.at + max_records)
        got = [ConsumerRecord(tp.topic, 0, o, 0, 0, b"k", b"v", None, 1, 1, ())
               for o in range(self.at, end)]
        self.at = end
        return {tp: got}


async def test_a_short_read_whose_fetches_bring_nothing_goes_on_with_a_longer_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """R26's 10-minute soak: a worker's fold of the last 40 records of a partition, a short
    read with 1 ms fetches, got nothing from the test broker for 30 s at a time, over and
    over, so the worker never took its partitions over. A short read that starves goes on
    with a bulk reader (its fetches wait long enough), not until the request timeout."""
    backend = KafkaLogBackend(KafkaConfig("127.0.0.1:9", topic_prefix="t.",
                                          request_timeout_ms=2_000))  # fmt: skip
    log = KafkaLog(backend, "b", "t.b", 1)

    async def new_reader(bulk: bool) -> _Reader:
        return _Reader(_FetchesBringNothing(16_000, serving=bulk), log)  # type: ignore[arg-type]

    monkeypatch.setattr(log, "_new_reader", new_reader)
    log._known_ends[0] = 16_000
    started = time.monotonic()
    records = await log.read(0, 15_960, limit=40)  # before: LogError after 2 s
    assert [r.offset for r in records] == list(range(15_960, 16_000))
    assert time.monotonic() - started < 1.5
