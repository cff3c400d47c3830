"""The projections under every host: the embedded Projector over a SQLite log, and over
Kafka topics on a real test broker both Kafka-mode hosts, aiokafka tails
(services/kafka/projections.py, the default) and faust agents (services/kafka/faust_host.py).

The same records, at the same partitions and offsets, must give byte-identical read
models; an undecodable record goes to the read model's quarantine and to the dead-letter
topic, and the records after it are still applied; a node started late catches up.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from jobledger.projections.store import ReadModelStore
from jobledger.schemas import JOBS, LOGS, SCHEDULES, WORKERS, decode, topic_of
from jobledger.schemas.codec import MAX_RECORD_DEPTH
from jobledger.services.kafka.faust_host import FaustProjections
from jobledger.services.kafka.ownership import GroupSettings
from jobledger.services.kafka.projections import (
    ERROR_HEADER,
    HEADROOM,
    SOURCE_HEADER,
    TRUNCATED_HEADER,
)
from jobledger.services.log.kafka import (
    DEAD_LETTER,
    KafkaConfig,
    KafkaLogBackend,
    jobledger_topics,
    murmur2_partition,
)
from jobledger.services.log.protocol import Entry, LogBackend, LogError
from jobledger.services.log.sqlite import SQLiteLogBackend
from jobledger.services.node.kafka import PROJECTION_HOSTS
from jobledger.services.runtime.projector import Projector
from tests.support.kafka_broker import TansuBroker
from tests.support.kafka_harness import PARTITIONS, kafka_config, node_config, started

GOLDEN = Path(__file__).parent / "golden" / "history_v1.jsonl"
WAIT_S = 20.0


def _golden_entries() -> list[tuple[str, Entry]]:
    """(topic, entry) of every recorded line, byte for byte, each at murmur2 of its key:
    both logs get the records at the same partitions, hence the same offsets."""
    entries = []
    for line in GOLDEN.read_bytes().splitlines():
        env = decode(line)
        entries.append((topic_of(env.event),
                        Entry(env.key, line, murmur2_partition(env.key, PARTITIONS))))
    return entries


async def _append(backend: LogBackend, entries: list[tuple[str, Entry]]) -> None:
    for topic, entry in entries:  # one at a time: the recorded order, across topics too
        await backend.topic(topic).append([entry])


async def _embedded_checksums(tmp_path: Path, entries: list[tuple[str, Entry]]) -> dict[str, str]:
    roles = {JOBS: PARTITIONS, LOGS: PARTITIONS, WORKERS: PARTITIONS, SCHEDULES: PARTITIONS}
    backend = await SQLiteLogBackend.open(tmp_path / "log.db", roles)
    store = await ReadModelStore.open(tmp_path / "embedded.views.db")
    try:
        await _append(backend, entries)
        projector = Projector(backend, store)
        await projector.catch_up()
        assert projector.quarantined == 0
        return await store.checksums()
    finally:
        await store.close()
        await backend.close()


async def _filled_topics(config: KafkaConfig, entries: list[tuple[str, Entry]]) -> None:
    backend = await KafkaLogBackend.open(config, jobledger_topics(config))
    try:
        await _append(backend, entries)
    finally:
        await backend.close()


@pytest.mark.parametrize("host", PROJECTION_HOSTS)
async def test_one_history_gives_identical_read_models_under_every_host(
    tmp_path: Path, kafka_broker: TansuBroker, host: str
) -> None:
    """The embedded host (SQLite log) and a Kafka-mode host (the same records on topics)."""
    entries = _golden_entries()
    embedded = await _embedded_checksums(tmp_path, entries)
    config = kafka_config(kafka_broker)
    await _filled_topics(config, entries)

    node = await started(node_config(config, tmp_path / "kafka.views.db", projection_host=host))
    try:
        assert await node.caught_up(WAIT_S)
        assert node.projector.quarantined == 0
        hosted = await node.store.checksums()
    finally:
        await node.stop()
    assert hosted == embedded
    assert len(hosted) >= 10  # every table: jobs, runs, run_logs, workers, checkpoints, ...


async def test_a_node_started_late_catches_up_to_the_same_read_models(
    tmp_path: Path, kafka_broker: TansuBroker
) -> None:
    entries = _golden_entries()
    config = kafka_config(kafka_broker)
    first = await started(node_config(config, tmp_path / "first.views.db"))
    try:
        await _filled_topics(config, entries[:20])
        assert await first.caught_up(WAIT_S)
        await _filled_topics(config, entries[20:])  # while the first one is running
        late = await started(node_config(config, tmp_path / "late.views.db"))
        try:
            assert await late.caught_up(WAIT_S) and await first.caught_up(WAIT_S)
            assert await late.store.checksums() == await first.store.checksums()
        finally:
            await late.stop()
    finally:
        await first.stop()


@pytest.mark.parametrize("host", PROJECTION_HOSTS)
async def test_a_node_restarted_resumes_from_its_checkpoints(
    tmp_path: Path, kafka_broker: TansuBroker, host: str
) -> None:
    entries = _golden_entries()
    config = kafka_config(kafka_broker)
    views = tmp_path / "node.views.db"
    await _filled_topics(config, entries[:20])
    node = await started(node_config(config, views, projection_host=host))
    assert await node.caught_up(WAIT_S)
    await node.stop()
    await _filled_topics(config, entries[20:])
    node = await started(node_config(config, views, projection_host=host))
    try:
        assert await node.caught_up(WAIT_S)
        # Resumed, not replayed: only the records after the checkpoints reached the store.
        assert node.projector.quarantined == 0
        restarted = await node.store.checksums()
    finally:
        await node.stop()
    assert restarted == await _embedded_checksums(tmp_path, entries)


@pytest.mark.parametrize("host", PROJECTION_HOSTS)
async def test_an_undecodable_record_goes_to_the_dead_letter_topic_and_the_rest_is_applied(
    tmp_path: Path, kafka_broker: TansuBroker, host: str
) -> None:
    entries = _golden_entries()
    config = kafka_config(kafka_broker)
    jobs = [entry for topic, entry in entries if topic == JOBS]
    garbage = Entry("job-x", b"{not json", jobs[0].partition)
    node = await started(node_config(config, tmp_path / "node.views.db", projection_host=host))
    try:
        await _filled_topics(config, [(JOBS, jobs[0]), (JOBS, garbage), (JOBS, jobs[1])])
        assert await node.caught_up(WAIT_S)
        assert node.projector.quarantined == 1
        assert await node.queries.quarantined() == 1
        assert await node.queries.job(decode(jobs[1].value).key) is not None  # went on
        letters = await _dead_letters(config)
    finally:
        await node.stop()
    [letter] = letters
    assert (letter.key, letter.value) == (b"job-x", b"{not json")
    headers = dict(letter.headers)
    assert headers[SOURCE_HEADER] == f"{config.topic_name(JOBS)}/{garbage.partition}/1".encode()
    assert b"not JSON" in headers[ERROR_HEADER]


async def test_a_record_nested_too_deep_is_quarantined_and_a_deep_payload_is_read(
    tmp_path: Path, kafka_broker: TansuBroker
) -> None:
    """Issue 18, item 3: records another producer writes to a topic. One nested deeper than
    the wire format allows goes to quarantine and the dead-letter topic; a payload too deep
    for msgspec's recursion, but within that limit, is read whole."""
    config = kafka_config(kafka_broker)
    first = next(entry for topic, entry in _golden_entries()
                 if topic == JOBS and decode(entry.value).type == "JobEnqueued")
    enqueued = first.value

    def with_payload(depth: int) -> bytes:
        payload = b"[" * depth + b"]" * depth
        return re.sub(rb'"payload":(\{[^{}]*\}|\[[^\[\]]*\]|[^,}]*)',
                      lambda _: b'"payload":' + payload, enqueued, count=1)

    deep = Entry(first.key, with_payload(3000), first.partition)
    too_deep = Entry("job-x", with_payload(MAX_RECORD_DEPTH), first.partition)
    node = await started(node_config(config, tmp_path / "node.views.db"))
    try:
        await _filled_topics(config, [(JOBS, too_deep), (JOBS, deep)])
        assert await node.caught_up(WAIT_S)
        assert node.projector.quarantined == 1
        task = await node.queries.task(decode(enqueued).key)
        assert task is not None and bytes(task.payload) == b"[" * 3000 + b"]" * 3000
        letters = await _dead_letters(config)
    finally:
        await node.stop()
    [letter] = letters
    assert b"levels deep" in dict(letter.headers)[ERROR_HEADER]


@pytest.mark.parametrize("host", PROJECTION_HOSTS)
async def test_a_record_too_large_to_dead_letter_whole_is_cut_and_the_rest_applied(
    tmp_path: Path, kafka_broker: TansuBroker, host: str
) -> None:
    """Fault-injection row R14: another producer's 3 MB record, larger than our producer
    may send. Its dead letter is its first bytes, with a header giving its length, and the
    projections go on (before: the send raised and the projections ended for good)."""
    config = kafka_config(kafka_broker)
    jobs = [entry for topic, entry in _golden_entries() if topic == JOBS]
    huge = Entry("job-x", b" " * 3_000_000, jobs[0].partition)
    node = await started(node_config(config, tmp_path / "node.views.db", projection_host=host))
    try:
        roomy = kafka_config(kafka_broker, config.topic_prefix, max_message_bytes=4 * 2**20)
        await _filled_topics(roomy, [(JOBS, jobs[0]), (JOBS, huge), (JOBS, jobs[1])])
        assert await node.caught_up(WAIT_S)
        assert not node.crashed()
        assert await node.queries.quarantined() == 1
        assert await node.queries.job(decode(jobs[1].value).key) is not None  # went on
        letters = await _dead_letters(config)
    finally:
        await node.stop()
    [letter] = letters
    assert dict(letter.headers)[TRUNCATED_HEADER] == b"3000000"
    assert letter.value == b" " * (config.max_message_bytes - HEADROOM)


async def test_a_tail_that_fails_is_started_again_from_the_checkpoints(
    tmp_path: Path, kafka_broker: TansuBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault-injection row R14: the first tail's read fails with an error of Kafka's. It is
    a fault /health reports, and a fresh tail from the checkpoints follows after a backoff
    (before: the projections ended for good)."""
    config = kafka_config(kafka_broker)
    entries = [(topic, entry) for topic, entry in _golden_entries() if topic == JOBS]
    await _filled_topics(config, entries[:2])
    tail, tails = KafkaLogBackend.tail, []

    def failing_once(self: KafkaLogBackend, positions: Any, limit: int = 5000) -> Any:
        tails.append(positions)
        if len(tails) == 1:
            return _refused()
        return tail(self, positions, limit)

    monkeypatch.setattr(KafkaLogBackend, "tail", failing_once)
    node = await started(node_config(config, tmp_path / "node.views.db"))
    try:
        assert await node.caught_up(WAIT_S)
        await _filled_topics(config, entries[2:4])
        assert await node.caught_up(WAIT_S)
        assert not node.crashed() and node.faults() == []
        assert await node.queries.job(decode(entries[3][1].value).key) is not None
    finally:
        await node.stop()
    assert len(tails) == 2


async def _refused() -> AsyncIterator[Any]:
    try:
        raise KafkaConnectionError("the broker went away")
    except KafkaConnectionError as error:
        raise LogError("cannot reach Kafka") from error
    yield


async def _dead_letters(config: KafkaConfig) -> list:  # type: ignore[type-arg]
    consumer = AIOKafkaConsumer(bootstrap_servers=config.bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    tp = TopicPartition(config.topic_name(DEAD_LETTER), 0)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        fetched = await consumer.getmany(tp, timeout_ms=int(WAIT_S * 1000))
        return list(fetched.get(tp, []))
    finally:
        await consumer.stop()


async def test_records_faust_skipped_after_a_failed_batch_are_read_from_the_log(
    tmp_path: Path, kafka_broker: TansuBroker
) -> None:
    """faust moves on past a batch whose agent failed: the next batch may begin beyond
    the checkpoint. The host reads the records in between from the log."""
    config = kafka_config(kafka_broker)
    entries = [(topic, entry) for topic, entry in _golden_entries() if topic == JOBS]
    await _filled_topics(config, entries)
    backend = await KafkaLogBackend.open(config, jobledger_topics(config))
    stores = [await ReadModelStore.open(tmp_path / f"{name}.db") for name in ("gap", "all")]
    try:
        partition = entries[0][1].partition
        log = backend.topic(JOBS)
        end = (await log.end_offsets())[partition]
        assert end >= 3
        gapped, whole = Projector(backend, stores[0]), Projector(backend, stores[1])
        host = FaustProjections(backend, gapped, "not-started", GroupSettings())
        await host._apply("jobs", JOBS, await log.read(partition, end - 1))  # only the last
        await whole.apply("jobs", await log.read(partition, 0, end))
        assert gapped.positions["jobs"] == whole.positions["jobs"] == {partition: end}
        assert await stores[0].checksums() == await stores[1].checksums()
    finally:
        for store in stores:
            await store.close()
        await backend.close()
