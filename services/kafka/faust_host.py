"""faust-streaming as a projection host in Kafka mode, selected with --projection-host
faust. The default host is aiokafka's (services/kafka/projections.py): this one costs
about four times the API node's CPU per job (docs/kafka.md, "Projections").

One faust agent per read model consumes that model's topic and hands each batch to the
same `Projector.apply` the embedded host runs (services/runtime/projector.py): the same pure
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
- faust's agents only hand batches to a writer task per model (`_ModelWriter`), which applies
  everything handed over since its last transaction; and faust's consumer fetches with
  KafkaConfig.fetch_max_wait_ms instead of faust's fixed 1.5 s (`_ConsumerThread`).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Callable, Coroutine
from typing import Any, cast

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as FaustKafkaConsumer
from faust.transport.drivers.aiokafka import Transport as FaustKafkaTransport

from jobledger.schemas import uuid7
from jobledger.services.kafka.ownership import GroupSettings
from jobledger.services.kafka.projections import DeadLetters, undecodable
from jobledger.services.log.kafka import KafkaLogBackend
from jobledger.services.log.protocol import LogError, Record
from jobledger.services.runtime.projector import TOPIC_OF_MODEL, Projector
from jobledger.services.runtime.supervise import cancel_and_wait

log = logging.getLogger("jobledger.faust")
BATCH = 5000  # records per faust batch at most
# How long a faust batch waits to fill (see _ModelWriter): the latency it adds at worst.
BATCH_WITHIN_S = 0.02
PENDING_MAX = 20_000  # records taken from faust and not yet applied: beyond, faust waits


def projection_app_id(topic_prefix: str, node_id: str) -> str:
    """A faust app id (so a consumer group) that no other node and no earlier start of
    this node shares: the group's one member is assigned every partition."""
    return f"{topic_prefix}projections.{node_id}.{uuid7()[-12:]}"


def _record(message: Any) -> Record:
    """A faust message as the Log protocol's Record (faust times are seconds)."""
    key = message.key.decode("utf-8", "replace") if message.key is not None else ""
    value = message.value if message.value is not None else b""
    return Record(message.partition, message.offset, round(message.timestamp * 1000), key, value)


class _ConsumerThread(AIOKafkaConsumerThread):
    """faust's consumer thread, with the fetch wait of the app (`_App.fetch_max_wait_ms`).

    faust creates its aiokafka consumer with fetch_max_wait_ms=1500, fixed. Apache Kafka
    answers a waiting fetch as soon as a record arrives, so there that only bounds idle
    polls; but a broker that answers only at the end of the wait (the test broker) holds
    the records that arrive while a fetch waits for up to 1.5 s: each time the read models
    had caught up, the next records were seen that much later (a POST /api/v1/tasks,
    which waits for its job to be visible, took up to 1.5 s)."""

    def _create_worker_consumer(self, transport: Any) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        app = cast(_App, self.app)  # only _App's transport makes this thread
        consumer._fetch_max_wait_ms = app.fetch_max_wait_ms  # read by consumer.start()
        return consumer


class _Consumer(FaustKafkaConsumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(FaustKafkaTransport):
    Consumer = _Consumer


class _App(faust.App):
    """A faust app on `_Transport`: faust's aiokafka transport with `_ConsumerThread`."""

    fetch_max_wait_ms = 10  # set per app from KafkaConfig.fetch_max_wait_ms

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)


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
        self._writers: dict[str, _ModelWriter] = {}
        self._datadir: str | None = None

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
        for writer in self._writers.values():
            await writer.stop()
        if self._datadir is not None:
            shutil.rmtree(self._datadir, ignore_errors=True)

    def crashed(self) -> list[str]:
        return list(self._failed)

    def _faust_app(self) -> faust.App:
        config = self.backend.config
        # faust makes a data directory even for memory tables; keep it out of the cwd
        self._datadir = tempfile.mkdtemp(prefix="jobledger-faust-")
        app = _App(
            self.app_id,
            broker=[f"kafka://{server.strip()}" for server in config.bootstrap_servers.split(",")],
            autodiscover=False,
            web_enabled=False,
            store="memory://",
            datadir=self._datadir,
            topic_disable_leader=True,  # no leader-election topic: nothing here needs a leader
            topic_allow_declare=False,  # jobledger's topics exist (KafkaLogBackend.open)
            consumer_auto_offset_reset="earliest",  # a partition without a checkpoint
            broker_session_timeout=self.group.session_timeout_ms / 1000,
            broker_heartbeat_interval=self.group.heartbeat_ms / 1000,
            broker_client_id=f"{config.client_id}-projections",
            broker_request_timeout=config.request_timeout_ms / 1000,
            consumer_max_fetch_size=config.max_message_bytes + 64 * 1024,
        )
        app.fetch_max_wait_ms = config.fetch_max_wait_ms
        return app

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
        consumer = AIOKafkaConsumer(**self.backend.config.client_settings(),
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
            writer = self._writers.get(model)
            if writer is None or writer.done():
                writer = self._writers[model] = _ModelWriter(self, model, role)
            async for events in stream.take_events(BATCH, within=BATCH_WITHIN_S):
                await writer.add([_record(e.message) for e in events])

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


class _ModelWriter:
    """Applies one model's records in the order faust hands them over, on a task of its
    own, so that faust keeps taking records while a transaction is folded and written.

    faust's take buffer fills only while the agent waits for it (it stops filling while
    the agent handles a batch), and moving a record into it costs faust a few awaits: with
    the agent applying each batch itself, every batch was what arrived in BATCH_WITHIN_S,
    a few dozen records, each paying a transaction. Here the agent only hands batches
    over; the writer applies everything handed over since its last transaction in one,
    so transactions grow with the load and stay small (low latency) when it is light.
    A failed apply is logged and reported (`crashed`); its records are read again from
    the log before the next batch (`_with_gaps_filled`), so none is skipped.
    """

    def __init__(self, host: FaustProjections, model: str, role: str):
        self.host = host
        self.model = model
        self.role = role
        self._pending: list[Record] = []
        self._more = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"project-{model}")

    def done(self) -> bool:
        return self._task.done()

    async def add(self, records: list[Record]) -> None:
        await self._room.wait()
        self._pending += records
        self._more.set()
        if len(self._pending) >= PENDING_MAX:
            self._room.clear()

    async def _run(self) -> None:
        while True:
            await self._more.wait()
            self._more.clear()
            records, self._pending = self._pending, []
            self._room.set()
            for start in range(0, len(records), PENDING_MAX):
                try:
                    chunk = records[start:start + PENDING_MAX]
                    await self.host._apply(self.model, self.role, chunk)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.host._failed.append(f"project-{self.model}")
                    log.exception("projection %s: a batch failed; its records are read "
                                  "again from the log before the next one", self.model)
                    break

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
