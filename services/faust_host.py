"""faust-streaming as the projection host in Kafka mode.

One faust agent per read model consumes that model's topic and hands each batch to the
same `Projector.apply` the embedded host runs (projections/projector.py): the same pure
reducers, the same store, rows and checkpoint in one SQLite transaction. Every API node
materialises ALL partitions of every topic into a read-model file of its own.

What faust does not do here, and what is done instead (docs/kafka.md says more):

- Every node must read every partition, but a faust app is a consumer group that splits
  partitions among the processes sharing its id. So each node start gets a faust app id
  of its own (`projection_app_id`): a group with one member, which is assigned everything.
- The checkpoint is the read model's (the offsets committed with the rows), not faust's
  committed offsets. Before faust joins its group, the group's committed offsets are set
  to the checkpoints with a plain aiokafka consumer, so faust starts exactly there;
  records below a checkpoint that still arrive are skipped by the projector.
- "Caught up" is measured from the log's highwaters (KafkaLog.end_offsets), not from
  faust's lag sensors, which use ListOffsets (wrong on the test broker).
- Undecodable records are quarantined in the read model by the projector; this host also
  produces them to the dead-letter topic (`DeadLetters`), before the batch is applied.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from jobledger.projections.projector import TOPIC_OF_MODEL, Projector
from jobledger.schemas import topic_of, uuid7
from jobledger.schemas.codec import Undecodable, decode_batch

from .kafka_log import DEAD_LETTER, KafkaLogBackend
from .log import LogError, Record
from .ownership import GroupSettings

log = logging.getLogger("jobledger.faust")
BATCH = 5000  # records per projector transaction at most
BATCH_WITHIN_S = 0.005  # how long a batch waits to fill: the latency it adds at worst
SOURCE_HEADER = "jobledger-source"  # where a dead letter came from: <topic>/<partition>/<offset>
ERROR_HEADER = "jobledger-error"  # why it could not be decoded


def projection_app_id(topic_prefix: str, node_id: str) -> str:
    """A faust app id (so a consumer group) that no other node and no earlier start of
    this node shares: the group's one member is assigned every partition."""
    return f"{topic_prefix}projections.{node_id}.{uuid7()[-12:]}"


class DeadLetters:
    """Produces undecodable records to the dead-letter topic: the record's key and value
    as they were, with headers naming its source and the decoding error. Each projection
    host that meets a record produces it (at least once per read model): copies have the
    same source header."""

    def __init__(self, backend: KafkaLogBackend):
        self.backend = backend
        self.topic = backend.config.topic_name(DEAD_LETTER)
        self.sent = 0

    async def send(self, role: str, records: Sequence[Undecodable]) -> None:
        producer = self.backend.producer()
        source = self.backend.config.topic_name(role)
        deliveries = [
            await producer.send(
                self.topic, value=bad.value, key=bad.key.encode(),
                headers=[(SOURCE_HEADER, f"{source}/{bad.partition}/{bad.offset}".encode()),
                         (ERROR_HEADER, bad.error.encode())],
            )
            for bad in records
        ]  # fmt: skip
        await asyncio.gather(*deliveries)
        self.sent += len(records)
        for bad in records:
            log.warning("dead letter: %s[%d]@%d: %s", source, bad.partition, bad.offset, bad.error)


def _record(message: Any) -> Record:
    """A faust message as the Log protocol's Record (faust times are seconds)."""
    key = message.key.decode("utf-8", "replace") if message.key is not None else ""
    value = message.value if message.value is not None else b""
    return Record(message.partition, message.offset, round(message.timestamp * 1000), key, value)


def undecodable(role: str, records: Sequence[Record]) -> list[Undecodable]:
    """Records of `role`'s topic the projector will quarantine: not decodable, or an event
    that belongs on another topic. Decoding is memoised on the records (Record.decoded)."""
    envs, bad = decode_batch(records)
    by_place = {(r.partition, r.offset): r for r in records}
    for env in envs:
        if topic_of(env.event) != role:
            rec = by_place[(env.partition, env.offset)]
            bad.append(Undecodable(rec.partition, rec.offset, rec.key, rec.value,
                                   f"{env.type} belongs on the {topic_of(env.event)} topic, "
                                   f"not {role}"))  # fmt: skip
    return bad


class FaustProjections:
    """Runs the projector's models as faust agents. start() returns once faust has joined
    its group; the caller waits for the read model to catch up (Node.caught_up)."""

    def __init__(self, backend: KafkaLogBackend, projector: Projector, app_id: str,
                 group: GroupSettings):  # fmt: skip
        self.backend = backend
        self.projector = projector
        self.app_id = app_id
        self.group = group
        self.dead_letters = DeadLetters(backend)
        self.app: faust.App | None = None
        self._failed: list[str] = []

    async def start(self) -> None:
        await self._commit_checkpoints()
        self.app = self._faust_app()
        for model, role in TOPIC_OF_MODEL.items():
            topic = self.app.topic(self.backend.config.topic_name(role),
                                   key_serializer="raw", value_serializer="raw")  # fmt: skip
            self.app.agent(topic, name=f"project-{model}")(self._agent(model, role))
        await self.app.start()

    async def stop(self) -> None:
        if self.app is not None:
            await self.app.stop()

    def crashed(self) -> list[str]:
        return list(self._failed)

    def _faust_app(self) -> faust.App:
        config = self.backend.config
        return faust.App(
            self.app_id,
            broker=[f"kafka://{server.strip()}" for server in config.bootstrap_servers.split(",")],
            autodiscover=False,
            web_enabled=False,
            store="memory://",
            topic_disable_leader=True,  # no leader-election topic: nothing here needs a leader
            topic_allow_declare=False,  # jobledger's topics exist (KafkaLogBackend.open)
            consumer_auto_offset_reset="earliest",  # a partition without a checkpoint
            broker_session_timeout=self.group.session_timeout_ms / 1000,
            broker_heartbeat_interval=self.group.heartbeat_ms / 1000,
            broker_client_id=f"{config.client_id}-projections",
            broker_request_timeout=config.request_timeout_ms / 1000,
            consumer_max_fetch_size=config.max_message_bytes + 64 * 1024,
        )

    async def _commit_checkpoints(self) -> None:
        """Set the new group's committed offsets to the read model's checkpoints, so that
        faust starts each partition where the read model stands."""
        offsets = {
            TopicPartition(self.backend.config.topic_name(role), partition):
                OffsetAndMetadata(offset, "")
            for model, role in TOPIC_OF_MODEL.items()
            for partition, offset in self.projector.positions[model].items() if offset
        }  # fmt: skip
        if not offsets:
            return
        consumer = AIOKafkaConsumer(**self.backend.config.client_settings(),  # type: ignore[arg-type]
                                    group_id=self.app_id, enable_auto_commit=False)
        try:
            await consumer.start()
            consumer.assign(list(offsets))
            await consumer.commit(offsets)
        except Exception as error:
            raise LogError(f"cannot set the offsets of group {self.app_id!r}: {error!r}") from error
        finally:
            await consumer.stop()

    def _agent(self, model: str, role: str) -> Callable[[Any], Coroutine[Any, Any, None]]:
        async def project(stream: Any) -> None:
            try:
                async for events in stream.take_events(BATCH, within=BATCH_WITHIN_S):
                    await self._apply(model, role, [_record(e.message) for e in events])
            except Exception:
                self._failed.append(f"project-{model}")
                log.exception("projection %s crashed", model)
                raise

        return project

    async def _apply(self, model: str, role: str, records: list[Record]) -> None:
        done = self.projector.positions[model]
        fresh = [r for r in records if r.offset >= done.get(r.partition, 0)]
        if not fresh:
            return
        fresh = await self._with_gaps_filled(role, done, fresh)
        bad = undecodable(role, fresh)
        if bad:
            await self.dead_letters.send(role, bad)  # before the checkpoint moves past them
        await self.projector.apply(model, fresh)

    async def _with_gaps_filled(self, role: str, done: dict[int, int],
                                records: list[Record]) -> list[Record]:  # fmt: skip
        """The records, preceded by any the read model lacks before them. faust moves on
        past a batch whose agent failed (and restarts the agent), so after an error the
        next batch may begin beyond the checkpoint: the missing records are read from the
        log, rather than skipped."""
        first: dict[int, int] = {}
        for rec in records:
            first.setdefault(rec.partition, rec.offset)
        missing: list[Record] = []
        for partition, offset in first.items():
            start = done.get(partition, 0)
            while start < offset:
                read = await self.backend.topic(role).read(partition, start, offset - start)
                missing += [r for r in read if r.offset < offset]
                if not read or read[-1].offset + 1 >= offset:
                    break
                start = read[-1].offset + 1
        if not missing:
            return records
        log.warning("%s: read %d records faust skipped", role, len(missing))
        return sorted([*missing, *records], key=lambda r: (r.partition, r.offset))
