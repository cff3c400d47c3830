"""What every partition owner shares (services/runtime/partition_owner.py), over a real
SQLite log, with a decider that records what it is told: which partitions are held and how
far each is applied, loading, catching up, consuming, and partitions gained, lost and
regained."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

import pytest

from jobledger.schemas import JOBS, Envelope, JobEnqueued, encode
from jobledger.services.log.protocol import Entry, Record
from jobledger.services.log.sqlite import SQLiteLogBackend
from jobledger.services.runtime.partition_owner import PartitionOwner
from jobledger.services.runtime.partition_state import JobsSnapshot
from tests.support.builders import envelope, job_state, open_log


class RecordingDecider:
    """Records what its PartitionOwner tells it. On give_up it hands over one job per
    partition; `during_recall`, if set, runs (and is awaited) while a batch is recalled."""

    def __init__(self) -> None:
        self.taken: list[JobsSnapshot] = []
        self.given_up: list[dict[int, JobsSnapshot]] = []
        self.applied: list[tuple[int, int]] = []  # (partition, offset) of each event
        self.during_recall: Callable[[], Awaitable[None]] | None = None

    def take(self, snapshot: JobsSnapshot) -> None:
        self.taken.append(snapshot)

    async def give_up(self, kept: Mapping[int, JobsSnapshot]) -> None:
        self.given_up.append(dict(kept))
        for partition, snapshot in kept.items():
            snapshot.hold(job_state(f"held-in-{partition}", partition=partition))

    async def recall(self, envs: list[Envelope]) -> bool:
        if self.during_recall is None:
            return False
        await self.during_recall()
        return True

    def apply(self, envs: list[Envelope]) -> None:
        self.applied += [(e.partition, e.offset) for e in envs]


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[SQLiteLogBackend]:
    """A log whose jobs topic has 3 records in partition 0 and 2 in partition 1."""
    backend = await open_log(tmp_path / "log.db")
    entries = [Entry(f"j{p}{n}", encode(envelope(JobEnqueued(job_id=f"j{p}{n}", task_type="t"))),
                     p) for p, count in [(0, 3), (1, 2)] for n in range(count)]  # fmt: skip
    await backend.topic(JOBS).append(entries)
    yield backend
    await backend.close()


def owner_of(backend: SQLiteLogBackend, partitions: list[int] | None = None,
             ) -> tuple[PartitionOwner[JobsSnapshot], RecordingDecider]:  # fmt: skip
    decider = RecordingDecider()
    return PartitionOwner(backend.topic(JOBS), decider, JobsSnapshot, partitions), decider


async def records(backend: SQLiteLogBackend) -> list[Record]:
    log = backend.topic(JOBS)
    return [r for p in range(log.partitions) for r in await log.read(p, 0)]


async def test_load_assigns_every_partition_held_with_the_states_of_each(
    backend: SQLiteLogBackend,
) -> None:
    owner, decider = owner_of(backend)  # every partition: 0 and 1
    owner.load([job_state("a", partition=0), job_state("b", partition=1),
                job_state("elsewhere", partition=7)], {0: 3})  # fmt: skip

    assert [(s.partition, s.position, list(s.jobs)) for s in decider.taken] == [
        (0, 3, ["a"]), (1, 0, ["b"]),
    ]
    assert owner.partitions == {0, 1} and owner.positions == {0: 3, 1: 0}


async def test_catch_up_applies_the_partitions_held_up_to_the_logs_end(
    backend: SQLiteLogBackend,
) -> None:
    owner, decider = owner_of(backend, [1])
    await owner.catch_up()
    assert decider.applied == [(1, 0), (1, 1)]
    assert owner.positions == {1: 2}


async def test_consume_skips_partitions_not_held_and_records_already_applied(
    backend: SQLiteLogBackend,
) -> None:
    owner, decider = owner_of(backend, [0])
    owner.load([], {0: 2})
    await owner.consume(await records(backend))
    assert decider.applied == [(0, 2)]
    assert owner.positions == {0: 3}

    await owner.consume(await records(backend))  # a redelivery
    assert decider.applied == [(0, 2)]


async def test_a_partition_revoked_while_the_decider_recalls_is_not_applied(
    backend: SQLiteLogBackend,
) -> None:
    owner, decider = owner_of(backend)
    owner.load([], {})
    decider.during_recall = lambda: owner.revoke([1])
    await owner.consume(await records(backend))
    assert decider.applied == [(0, 0), (0, 1), (0, 2)]
    assert owner.partitions == {0} and owner.positions == {0: 3}


async def test_a_lost_partition_is_kept_as_the_decider_left_it_until_it_comes_back(
    backend: SQLiteLogBackend,
) -> None:
    owner, decider = owner_of(backend)
    owner.load([], {})
    await owner.catch_up()

    await owner.revoke([1, 5])  # 5 was never held
    [kept] = decider.given_up
    assert list(kept) == [1] and kept[1].position == 2
    assert owner.partitions == {0} and owner.positions == {0: 3}
    await owner.revoke([1])
    assert len(decider.given_up) == 1, "a partition not held is not given up again"

    again = owner.snapshot_of(1)
    assert again is kept[1] and list(again.jobs) == ["held-in-1"]
    assert (owner.snapshot_of(1).position, owner.snapshot_of(1).jobs) == (0, {})
    owner.assign(again)
    assert decider.taken[-1] is again
    assert owner.partitions == {0, 1} and owner.positions == {0: 3, 1: 2}
