"""What every partition owner does alike, whatever it decides.

A partition owner is the only one that decides for the partitions it holds
(docs/architecture.md, requirement 4): the Dispatcher on the jobs topic, the Scheduler on
the schedules topic. A `PartitionOwner` is the part they share: which partitions are held
and how far each has been applied; starting from the read model's snapshot (`load`) and
folding on to the log's end before deciding anything (`catch_up`); following the log
(`follow`) or being fed by a consumer group (`consume`); gaining and losing partitions
(`assign`, `revoke`), and keeping what it held of a lost partition in case that comes back
(`snapshot_of`).

What the events mean and what to decide is its `Decider`'s: the Dispatcher and the
Scheduler each hold a PartitionOwner and are its decider. The embedded node and a
consumer group (services/kafka/ownership.py) drive the PartitionOwner itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping
from typing import Any, Generic, Protocol, TypeVar

from jobledger.schemas import Envelope
from jobledger.schemas.codec import decode_batch
from jobledger.services.log.protocol import Log, Record
from jobledger.services.runtime.faults import Faults, retried_reads
from jobledger.services.runtime.partition_state import Snapshot

SnapshotT = TypeVar("SnapshotT", bound=Snapshot)
SnapshotT_contra = TypeVar("SnapshotT_contra", bound=Snapshot, contravariant=True)


class Decider(Protocol[SnapshotT_contra]):
    """What a PartitionOwner tells the one that decides for its partitions."""

    def take(self, snapshot: SnapshotT_contra) -> None:
        """Decide for the snapshot's partition from now on, starting from its state (folded
        up to the partition's end, so that nothing is decided on a stale state)."""

    async def give_up(self, kept: Mapping[int, SnapshotT_contra]) -> None:
        """Stop deciding for kept's partitions at once and move what is held of them into
        kept's snapshots (empty, at the positions reached). Return once everything decided
        for them is durable, so that the next owner reads it when it rebuilds."""

    async def recall(self, envs: list[Envelope]) -> bool:
        """Look up what applying envs needs and is not held (it may await). True if it
        awaited: the partitions held may have changed meanwhile."""

    def apply(self, envs: list[Envelope]) -> None:
        """Apply new events of the partitions held, in log order."""


class PartitionOwner(Generic[SnapshotT]):
    def __init__(
        self, log: Log, decider: Decider[SnapshotT], empty: Callable[[int, int], SnapshotT],
        partitions: Collection[int] | None = None,
    ):
        """empty(partition, position): a snapshot holding nothing, at position. partitions:
        those held from the start (default: all of the log's)."""
        self.log = log
        self.decider = decider
        self.empty = empty
        # Changed in place, never rebound: a decider may keep them as attributes of its own.
        self.partitions = set(range(log.partitions) if partitions is None else partitions)
        self.positions: dict[int, int] = {}  # partition -> the next offset to apply
        # Partitions lost to another owner, kept as of where we stopped following them: if
        # one comes back, folding on from there is cheaper than from offset 0.
        self._dormant: dict[int, SnapshotT] = {}

    # -- starting -------------------------------------------------------------------------

    def load(self, states: Iterable[Any], positions: Mapping[int, int]) -> None:
        """Start from the read model instead of offset 0: states (each with its partition)
        as of positions. assign() every partition held from the start."""
        snapshots = {p: self.empty(p, positions.get(p, 0)) for p in self.partitions}
        for state in states:
            if state.partition in snapshots:
                snapshots[state.partition].hold(state)
        for snapshot in snapshots.values():
            self.assign(snapshot)

    async def catch_up(self) -> None:
        """Apply the partitions held up to the log's end as it is now. The read model
        (load) may be behind the log, after a kill: records the projector had not written
        yet. Deciding from it would decide again what the log shows decided."""
        for partition in self.partitions:
            self.positions.setdefault(partition, 0)
        for partition, end in (await self.log.end_offsets()).items():
            while partition in self.partitions and self.positions[partition] < end:
                records = await self.log.read(partition, self.positions[partition])
                if not records:
                    break
                await self.consume(records)

    # -- following the log ----------------------------------------------------------------

    async def follow(self, faults: Faults, part: str) -> None:
        """Apply the records of the partitions held as the log gets them (the embedded
        mode; in Kafka mode a consumer group calls consume()). A read that fails with a
        fault that can pass is part's fault in faults, and retried from what is applied."""
        async def tail() -> AsyncIterator[list[Record]]:
            return self.log.tail(self.positions)

        async for records in retried_reads(faults, part, tail):
            await self.consume(records)

    async def consume(self, records: list[Record]) -> None:
        """Apply records; those of partitions not held, or already applied, are skipped."""
        fresh = self._unapplied(records)
        envs, _bad = decode_batch(fresh)  # the projections quarantine the undecodable ones
        if await self.decider.recall(envs):
            # Again: a partition may have been revoked (or given back) meanwhile. Records
            # are decoded once (Record.decoded), so this costs a filter.
            fresh = self._unapplied(records)
            envs, _bad = decode_batch(fresh)
        positions = self.positions
        for rec in fresh:
            positions[rec.partition] = rec.offset + 1
        self.decider.apply(envs)

    def _unapplied(self, records: list[Record]) -> list[Record]:
        held, positions = self.partitions, self.positions
        return [r for r in records if r.partition in held and r.offset >= positions[r.partition]]

    # -- gaining and losing partitions ----------------------------------------------------

    def snapshot_of(self, partition: int) -> SnapshotT:
        """Where to rebuild a partition from: what was kept when it was last lost, else
        nothing at offset 0. Fold the partition on from its position, then assign() it."""
        kept = self._dormant.pop(partition, None)
        return kept if kept is not None else self.empty(partition, 0)

    def assign(self, snapshot: SnapshotT) -> None:
        """Hold a partition from now on, from a snapshot of it folded up to the partition's
        end: the decider takes it over."""
        self.partitions.add(snapshot.partition)
        self.positions[snapshot.partition] = snapshot.position
        self.decider.take(snapshot)

    async def revoke(self, partitions: Collection[int]) -> None:
        """Hold these partitions no more. Returns once the decider's decisions for them are
        durable, so that the next owner reads them when it rebuilds; what the decider held
        of them is kept for snapshot_of()."""
        lost = self.partitions & set(partitions)
        if not lost:
            return
        self.partitions.difference_update(lost)
        kept = {p: self.empty(p, self.positions.pop(p)) for p in lost}
        await self.decider.give_up(kept)
        self._dormant.update(kept)
