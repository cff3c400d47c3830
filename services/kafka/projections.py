"""The projection host of the Kafka mode: each read model follows its topic with aiokafka.

The same loop as the embedded host (services/runtime/projector.py): a tail of the models'
topics (`KafkaLogBackend.tail`: one consumer assigned every partition of the four topics,
handing over what each `getmany` brings) and `Projector.apply` of each batch, model by
model: the same pure reducers, the same store, rows and checkpoint in one SQLite
transaction. Every API node materialises ALL partitions of every topic into a read-model
file of its own; the tail starts at the read model's checkpoints, which are the only
positions kept (no consumer group, no committed offsets).

Why not faust-streaming (services/kafka/faust_host.py, still selectable): faust hands records
to an agent one at a time through its stream machinery, on a consumer thread of its own,
and that per-record path cost the API node about four times the CPU of this loop per job
(docs/kafka.md, "Projections": measured figures). A batch that aiokafka already fetched
goes to the projector as it is here.

Undecodable records (and events on the wrong topic) are quarantined in the read model by
the projector; the host also produces them to the dead-letter topic (`DeadLetters`),
before the batch is applied, so the checkpoint never moves past a record that is not
yet there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

from aiokafka.errors import KafkaError, OffsetOutOfRangeError

from jobledger.schemas import topic_of
from jobledger.schemas.codec import Undecodable, decode_batch
from jobledger.services.log.kafka import DEAD_LETTER, KafkaLogBackend
from jobledger.services.log.protocol import Record
from jobledger.services.runtime.faults import retried_reads
from jobledger.services.runtime.projector import TOPIC_OF_MODEL, Projector
from jobledger.services.runtime.supervise import crashed, spawn

log = logging.getLogger("jobledger.projections")
SOURCE_HEADER = "jobledger-source"  # where a dead letter came from: <topic>/<partition>/<offset>
ERROR_HEADER = "jobledger-error"  # why it could not be decoded
TRUNCATED_HEADER = "jobledger-truncated"  # a value cut to fit: its whole length in bytes
HEADROOM = 4096  # bytes of a dead letter left for its key, headers and record overhead


class DeadLetters:
    """Produces undecodable records to the dead-letter topic: the record's key and value
    as they were (cut to what our producer may send, _fitting), with headers naming its
    source and the decoding error. Each projection
    host that meets a record produces it (at least once per read model): copies have the
    same source header."""

    def __init__(self, backend: KafkaLogBackend):
        self.backend = backend
        self.topic = backend.config.topic_name(DEAD_LETTER)
        self.sent = 0
        # Another producer may have written a record larger than our producer may send
        # (its max request size): before, the send raised and ended the projections for
        # good (fault-injection row R14, a 10 MB record).
        self.max_value = backend.config.max_message_bytes - HEADROOM

    def _fitting(self, value: bytes, headers: list[tuple[str, bytes]]) -> bytes:
        """value, or its first max_value bytes with a header giving its whole length (the
        whole record stays on its topic, at the place the source header names)."""
        if len(value) <= self.max_value:
            return value
        headers.append((TRUNCATED_HEADER, str(len(value)).encode()))
        return value[:self.max_value]

    async def send(self, role: str, records: Sequence[Undecodable]) -> None:
        producer = self.backend.producer()
        source = self.backend.config.topic_name(role)
        deliveries = []
        for bad in records:
            headers = [(SOURCE_HEADER, f"{source}/{bad.partition}/{bad.offset}".encode()),
                       (ERROR_HEADER, bad.error[:1000].encode())]
            value = self._fitting(bad.value, headers)
            deliveries.append(await producer.send(
                self.topic, value=value, key=bad.key.encode()[:1000], headers=headers))
        await asyncio.gather(*deliveries)
        self.sent += len(records)
        for bad in records:
            log.warning("dead letter: %s[%d]@%d: %s", source, bad.partition, bad.offset, bad.error)


def undecodable(role: str, records: Sequence[Record]) -> list[Undecodable]:
    """Records of `role`'s topic the projector will quarantine: not decodable, or an event
    that belongs on another topic. Decoding is memoised on the records (Record.decoded),
    so the projector does not decode them again."""
    envs, bad = decode_batch(records)
    misplaced = [env for env in envs if topic_of(env.event) != role]
    if misplaced:
        by_place = {(r.partition, r.offset): r for r in records}
        for env in misplaced:
            rec = by_place[(env.partition, env.offset)]
            bad.append(Undecodable(rec.partition, rec.offset, rec.key, rec.value,
                                   f"{env.type} belongs on the {topic_of(env.event)} topic, "
                                   f"not {role}"))  # fmt: skip
    return bad


def kafka_fault(error: BaseException) -> str | None:
    """An error of Kafka's (or of the network) that trying again may mend, for people; None
    for any other, offsets out of range included (the records are gone: trying again would
    not bring them back)."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OffsetOutOfRangeError):
            return None
        if isinstance(cause, KafkaError | OSError):
            return f"{type(cause).__name__}: {cause}"[:300]
        cause = cause.__cause__
    return None


class LogProjections:
    """Follows every model's topic from its checkpoint. start() returns at once; the
    caller waits for the read models to catch up (Node.caught_up)."""

    def __init__(self, backend: KafkaLogBackend, projector: Projector):
        self.backend = backend
        self.projector = projector
        self.dead_letters = DeadLetters(backend)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [spawn(self._follow(), "projections")]

    def crashed(self) -> list[str]:
        """As in the embedded host, the projections stop at a batch that failed (the
        projector does not apply past a failed write), and /health reports it."""
        return crashed(self._tasks)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _follow(self) -> None:
        """One tail of every model's topic (one consumer: KafkaLogBackend.tail), from the
        checkpoints; each batch is applied model by model. A tail that fails with an error
        of Kafka's starts again from the checkpoints after a backoff (retried_reads)."""
        async def tail() -> AsyncIterator[dict[str, list[Record]]]:
            starts = {}
            for model, role in TOPIC_OF_MODEL.items():
                done = self.projector.positions[model]
                # Name every partition: the checkpoint holds only partitions already applied.
                partitions = self.backend.topic(role).partitions
                starts[role] = {p: done.get(p, 0) for p in range(partitions)}
            return self.backend.tail(starts)

        reads = retried_reads(self.projector.faults, "projection reads", tail, kafka_fault)
        async for batches in reads:
            for model, role in TOPIC_OF_MODEL.items():
                if role in batches:
                    await self._apply(model, role, batches[role])

    async def _apply(self, model: str, role: str, records: list[Record]) -> None:
        bad = undecodable(role, records)
        while bad:  # before the checkpoint moves past them
            try:
                await self.dead_letters.send(role, bad)
            except Exception as error:
                what = kafka_fault(error)
                if what is None:
                    raise
                faults = self.projector.faults
                await faults.clock.sleep(faults.failing("dead letters", what))
            else:
                self.projector.faults.resumed("dead letters")
                break
        # Written before the next batch is taken: what arrives meanwhile is fetched in the
        # background and makes the next batch, and its transaction, bigger.
        await self.projector.apply(model, records)
