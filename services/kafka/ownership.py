"""Partition ownership by consumer-group assignment (Kafka mode).

One `GroupOwnership` per owner and topic: the dispatcher's PartitionOwner on the jobs topic
(group `<prefix>dispatchers`), the scheduler's on the schedules topic (group
`<prefix>schedulers`).
Kafka's group coordinator gives each partition to one member of the group; that member
is the partition's only decider (docs/kafka.md, "Partition ownership").

- Gaining a partition: the consumer pauses it at once, then a background task folds the
  partition from the owner's snapshot (offset 0, or where the owner stopped following it
  when it last lost it) up to the partition's end, hands the snapshot to the owner
  (`assign`), seeks the consumer there and resumes it. Nothing is decided for the
  partition before the fold reached the end. The fold runs outside the rebalance
  callback because aiokafka sends no group heartbeats while that callback runs.
- Losing a partition: in the rebalance callback (which the group waits for) the owner
  stops deciding and waits until its decisions are durable (`revoke`), so the next
  owner's fold sees them.
- Records of the held partitions come from this group consumer and go to the owner
  (`consume`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from jobledger.services.log.kafka import FETCH_OVERHEAD, Gaps, KafkaLogBackend, _to_record
from jobledger.services.log.protocol import LogError
from jobledger.services.runtime.partition_owner import PartitionOwner
from jobledger.services.runtime.partition_state import Snapshot
from jobledger.services.runtime.supervise import crashed, spawn

log = logging.getLogger("jobledger.ownership")
REBUILD_BATCH = 5000  # records per read while folding a gained partition
REBUILD_RETRY_S = 1.0  # a fold that failed (the log unreachable) is tried again this much later
FEED_POLL_MS = 1000  # getmany returns on records; this only bounds each wait


@dataclass(frozen=True)
class GroupSettings:
    """session_timeout_ms: how long a member may be silent before the group gives its
    partitions to the others (a killed worker's jobs move after about this long).
    heartbeat_interval_ms: default a sixth of the session timeout."""

    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.session_timeout_ms, int) or self.session_timeout_ms < 100:
            raise ValueError(
                f"session_timeout_ms: an integer of at least 100, got {self.session_timeout_ms!r}")
        beat = self.heartbeat_interval_ms
        if beat is not None and not 0 < beat < self.session_timeout_ms:
            raise ValueError(f"heartbeat_interval_ms: between 1 and session_timeout_ms - 1, "
                             f"got {beat!r}")  # fmt: skip

    @property
    def heartbeat_ms(self) -> int:
        return self.heartbeat_interval_ms or max(50, self.session_timeout_ms // 6)


AfterAssign = Callable[[set[int]], Awaitable[None]]


class GroupOwnership(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka has no types: Any
    def __init__(
        self, backend: KafkaLogBackend, role: str, group_id: str, owner: PartitionOwner[Any],
        settings: GroupSettings, after_assign: AfterAssign | None = None,
        client_id: str | None = None,
    ):
        self.backend = backend
        self.role = role
        self.group_id = group_id
        self.owner = owner
        self.settings = settings
        self.after_assign = after_assign
        self.client_id = client_id  # how the group's members list this process
        self.held: set[int] = set()  # partitions the owner decides for now
        self._gaps = Gaps(backend.topic(role), {})  # records a fetch skipped, put back
        self._rebuilding: dict[int, asyncio.Task[None]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Join the group; partitions arrive (and leave) through the rebalance callbacks."""
        config = self.backend.config
        settings = config.client_settings()
        if self.client_id is not None:
            settings["client_id"] = self.client_id
        self._consumer = AIOKafkaConsumer(
            **settings,
            group_id=self.group_id,
            enable_auto_commit=False,  # positions come from the owner's folds, not the group
            auto_offset_reset="earliest",  # never used: a gained partition is sought first
            session_timeout_ms=self.settings.session_timeout_ms,
            heartbeat_interval_ms=self.settings.heartbeat_ms,
            fetch_max_wait_ms=config.fetch_max_wait_ms,
            max_partition_fetch_bytes=config.max_message_bytes + FETCH_OVERHEAD,
        )
        self._consumer.subscribe([config.topic_name(self.role)], listener=self)
        try:
            await self._consumer.start()
        except Exception as error:
            await self._consumer.stop()
            raise LogError(f"cannot join group {self.group_id!r} at "
                           f"{config.bootstrap_servers}: {error!r}") from error  # fmt: skip
        self._tasks = [spawn(self._feed(), f"{self.role}-group-feed")]

    def crashed(self) -> list[str]:
        return crashed([*self._tasks, *self._rebuilding.values()])

    async def stop(self) -> None:
        """Give every partition up (the owner's decisions made durable first), then leave
        the group, so the other members take them over at once rather than after a
        session timeout."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._cancel_rebuilds(set(self._rebuilding))
        held, self.held = self.held, set()
        await self.owner.revoke(held)
        if self._consumer is not None:
            await self._consumer.stop()

    # -- the rebalance callbacks (aiokafka's ConsumerRebalanceListener) --------------------

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        lost = {tp.partition for tp in revoked}
        await self._cancel_rebuilds(lost)
        held = self.held & lost
        self.held -= held
        self._gaps.forget(lost)
        if held:
            log.info("%s: gave up partitions %s of %s", self.group_id, sorted(held), self.role)
        await self.owner.revoke(held)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        assert self._consumer is not None
        for tp in assigned:
            if tp.partition in self.held or tp.partition in self._rebuilding:
                continue
            # Before any await: no record of it may reach the owner before its fold is done.
            self._consumer.pause(tp)
            self._rebuilding[tp.partition] = spawn(
                self._take_over(tp), f"{self.role}-take-over-{tp.partition}")

    # -- taking a partition over ----------------------------------------------------------

    async def _take_over(self, tp: TopicPartition) -> None:
        snapshot = self.owner.snapshot_of(tp.partition)
        while True:
            try:
                await self._fold_to_end(snapshot)
                break
            except LogError as error:
                log.warning("%s: folding %s[%d] failed, again in %gs: %s", self.group_id,
                            self.role, tp.partition, REBUILD_RETRY_S, error)  # fmt: skip
                await asyncio.sleep(REBUILD_RETRY_S)  # the log is unreachable: nothing to await
        assert self._consumer is not None
        self.owner.assign(snapshot)
        self.held.add(tp.partition)
        del self._rebuilding[tp.partition]
        self._consumer.seek(tp, snapshot.position)
        self._gaps.start(tp.partition, snapshot.position)
        self._consumer.resume(tp)
        log.info("%s: took over %s[%d] at offset %d", self.group_id, self.role, tp.partition,
                 snapshot.position)  # fmt: skip
        if self.after_assign is not None:
            await self.after_assign({tp.partition})

    async def _fold_to_end(self, snapshot: Snapshot) -> None:
        topic = self.backend.topic(self.role)
        end = (await topic.end_offsets())[snapshot.partition]
        while snapshot.position < end:
            records = await topic.read(snapshot.partition, snapshot.position, REBUILD_BATCH)
            if not records:
                break  # nothing left before the end (records removed by retention)
            snapshot.fold(records)

    async def _cancel_rebuilds(self, partitions: set[int]) -> None:
        tasks = [self._rebuilding.pop(p) for p in partitions if p in self._rebuilding]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- records of the held partitions ---------------------------------------------------

    async def _feed(self) -> None:
        assert self._consumer is not None
        while True:
            fetched = await self._consumer.getmany(timeout_ms=FEED_POLL_MS, max_records=5000)
            records = await self._gaps.fill([_to_record(m) for tp in sorted(fetched)
                                             for m in fetched[tp]])
            if records:
                await self.owner.consume(records)
