"""The contract every Log backend passes (see the numbered requirements in
services/log/protocol.py).

A backend's test module subclasses `LogContract` and provides an async fixture `backend` that
yields a LogBackend on which topics "a" (3 partitions) and "b" (1 partition) exist and are
empty. The tests use only the protocol in services/log/protocol.py, so the same suite runs against
SQLite and against a real Kafka broker.

Waits are bounded by `LogContract.wait_s`; a backend with slow first fetches (Kafka) may
raise it in its subclass. Nothing here sleeps to synchronise: ordering comes from events
and tasks.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager

import pytest

from jobledger.services.log.protocol import Entry, Log, LogBackend, LogError, Position, Record

# --- helpers -------------------------------------------------------------------------------


@asynccontextmanager
async def _tailing(
    log: Log, positions: Mapping[int, int], limit: int = 5000
) -> AsyncIterator[AsyncIterator[list[Record]]]:
    """A tail that is closed on the way out, so no generator outlives the test."""
    batches = log.tail(positions, limit)
    try:
        yield batches
    finally:
        aclose = getattr(batches, "aclose", None)
        if aclose is not None:
            await aclose()


async def _next_batch(batches: AsyncIterator[list[Record]]) -> list[Record]:
    batch = await anext(batches)
    # An empty batch means the tail woke for nothing: the protocol says it waits instead.
    assert batch, "tail yielded an empty batch"
    return batch


async def _take(
    batches: AsyncIterator[list[Record]], count: int, timeout: float
) -> list[Record]:
    """At least `count` records from a tail, or an AssertionError after `timeout` seconds."""
    got: list[Record] = []

    async def pull() -> None:
        while len(got) < count:
            got.extend(await _next_batch(batches))

    try:
        await asyncio.wait_for(pull(), timeout)
    except TimeoutError:
        raise AssertionError(f"tail gave {len(got)} of {count} records in {timeout} s") from None
    return got


async def _cancel(task: asyncio.Task[object]) -> None:
    """Stop a task and wait until it has stopped (so a tail it drives is no longer running)."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved: its failure, if any, was already reported elsewhere


async def _tail_across_append(
    log: Log,
    positions: Mapping[int, int],
    before: int,
    append: Callable[[], Awaitable[object]],
    after: int,
    timeout: float,
    limit: int = 5000,
) -> list[Record]:
    """Tail until `before` records arrived, then run `append` and tail until `after` more.

    The consumer task sets `caught_up` and, in the same step, calls anext() again; so by the
    time `append` runs the tail has started looking for its next batch. That is what makes
    this a test of waking up rather than of reading what was already there.
    """
    got: list[Record] = []
    caught_up = asyncio.Event()

    async with _tailing(log, positions, limit) as batches:

        async def consume() -> None:
            while len(got) < before:
                got.extend(await _next_batch(batches))
            caught_up.set()
            while len(got) < before + after:
                got.extend(await _next_batch(batches))

        consumer: asyncio.Task[None] = asyncio.create_task(consume())
        try:
            waiter = asyncio.create_task(caught_up.wait())
            await asyncio.wait({waiter, consumer}, timeout=timeout, return_when="FIRST_COMPLETED")
            await _cancel(waiter)
            if consumer.done():
                consumer.result()  # re-raise the consumer's failure, if any
            assert caught_up.is_set(), f"tail gave {len(got)} of {before} existing records"

            await append()
            done, _ = await asyncio.wait({consumer}, timeout=timeout)
            assert done, f"tail did not wake: {len(got) - before} of {after} new records"
            consumer.result()
        finally:
            await _cancel(consumer)
    return got


def _by_partition(records: Sequence[Record]) -> dict[int, list[Record]]:
    out: dict[int, list[Record]] = {}
    for record in records:
        out.setdefault(record.partition, []).append(record)
    return out


def _values(records: Sequence[Record]) -> list[bytes]:
    return [r.value for r in records]


# --- the contract --------------------------------------------------------------------------


class LogContract:
    """Abstract: subclasses provide the async fixture `backend` (topics "a": 3, "b": 1)."""

    wait_s: float = 5.0

    # 1, 2: positions

    async def test_append_returns_positions_in_order_consecutive_from_zero(
        self, backend: LogBackend
    ) -> None:
        log = backend.topic("a")
        parts = [0, 1, 0, 2, 0, 1]
        entries = [Entry("k", b"%d" % i, partition=p) for i, p in enumerate(parts)]
        positions = await log.append(entries)
        assert positions == [(0, 0), (1, 0), (0, 1), (2, 0), (0, 2), (1, 1)]

    async def test_later_appends_continue_each_partitions_offsets(
        self, backend: LogBackend
    ) -> None:
        log = backend.topic("a")
        await log.append([Entry("k", b"x", partition=0), Entry("k", b"y", partition=2)])
        assert await log.append([Entry("k", b"z", partition=0)]) == [(0, 1)]
        assert await log.append([Entry("k", b"w", partition=2), Entry("k", b"v", partition=1)]) == [
            (2, 1),
            (1, 0),
        ]

    async def test_unsynced_appends_interleave_with_synced_ones_in_order(
        self, backend: LogBackend
    ) -> None:
        """sync=False (the dispatcher's decisions) changes when a record is flushed, not
        where it lands or what is read back."""
        log = backend.topic("a")
        appended = await asyncio.gather(*(
            log.append([Entry("k", b"%d" % i, partition=0)], sync=i % 2 == 0) for i in range(6)))
        assert sorted(p for [p] in appended) == [(0, o) for o in range(6)]
        assert [r.value for r in await log.read(0, 0)] == [b"%d" % i for i in range(6)]

    async def test_append_of_nothing_returns_no_positions(self, backend: LogBackend) -> None:
        log = backend.topic("a")
        assert await log.append([]) == []
        assert await log.end_offsets() == {0: 0, 1: 0, 2: 0}

    async def test_append_to_partition_out_of_range_raises_and_appends_nothing(
        self, backend: LogBackend
    ) -> None:
        log = backend.topic("a")
        with pytest.raises(LogError):
            await log.append([Entry("k", b"ok", partition=0), Entry("k", b"bad", partition=3)])
        # A refused append must not land in part: the caller was told it failed.
        assert await log.end_offsets() == {0: 0, 1: 0, 2: 0}
        assert await log.read(0, 0) == []
        assert await log.append([Entry("k", b"next", partition=0)]) == [(0, 0)]

    async def test_explicit_partition_is_honoured(self, backend: LogBackend) -> None:
        log = backend.topic("a")
        # The same key sent to every partition: the explicit partition wins over the key.
        positions = await log.append([Entry("same-key", b"v", partition=p) for p in (2, 1, 0)])
        assert [p for p, _ in positions] == [2, 1, 0]
        for partition in range(3):
            [record] = await log.read(partition, 0)
            assert (record.partition, record.key) == (partition, "same-key")

    async def test_records_keep_their_content_after_later_appends(
        self, backend: LogBackend
    ) -> None:
        log = backend.topic("a")
        await log.append([Entry(f"k{i}", b"v%d" % i, partition=0) for i in range(5)])
        first = await log.read(0, 0)
        await log.append([Entry(f"k{i}", b"w%d" % i, partition=0) for i in range(5)])
        # Requirement 2: a record never changes.
        assert (await log.read(0, 0))[:5] == first

    # 7: key -> partition

    async def test_partition_for_is_stable_and_in_range(self, backend: LogBackend) -> None:
        log = backend.topic("a")
        keys = [f"job-{i}" for i in range(300)] + ["", "ключ/🙂"]
        chosen = {key: log.partition_for(key) for key in keys}
        assert all(0 <= p < log.partitions for p in chosen.values())
        # Stable: again on the same handle and on a fresh handle of the same topic.
        assert {key: log.partition_for(key) for key in keys} == chosen
        assert {key: backend.topic("a").partition_for(key) for key in keys} == chosen
        # Not degenerate: 300 keys over 3 partitions use all of them.
        assert set(chosen.values()) == {0, 1, 2}

    async def test_single_partition_topic_puts_every_key_on_partition_zero(
        self, backend: LogBackend
    ) -> None:
        log = backend.topic("b")
        assert {log.partition_for(f"k{i}") for i in range(50)} == {0}

    async def test_entries_without_partition_go_to_partition_for_key(
        self, backend: LogBackend
    ) -> None:
        log = backend.topic("a")
        keys = [f"job-{i % 10}" for i in range(40)]
        positions = await log.append([Entry(key, key.encode()) for key in keys])
        assert [p for p, _ in positions] == [log.partition_for(key) for key in keys]
        # One key, one partition: every record of a key sits where partition_for says.
        for partition in range(3):
            for record in await log.read(partition, 0):
                assert log.partition_for(record.key) == partition

    # 3: read

    async def test_read_returns_records_from_offset_up_to_limit(self, backend: LogBackend) -> None:
        log = backend.topic("a")
        await log.append([Entry(f"k{i}", b"v%d" % i, partition=1) for i in range(10)])
        records = await log.read(1, 3, limit=4)
        assert [(r.partition, r.offset) for r in records] == [(1, 3), (1, 4), (1, 5), (1, 6)]
        assert _values(records) == [b"v3", b"v4", b"v5", b"v6"]
        assert [r.key for r in records] == ["k3", "k4", "k5", "k6"]

    async def test_read_without_limit_returns_the_rest_of_the_partition(
        self, backend: LogBackend
    ) -> None:
        log = backend.topic("a")
        await log.append([Entry("k", b"v%d" % i, partition=2) for i in range(7)])
        assert [r.offset for r in await log.read(2, 4)] == [4, 5, 6]

    async def test_read_only_returns_the_asked_partition(self, backend: LogBackend) -> None:
        log = backend.topic("a")
        await log.append([Entry("k", b"v%d" % i, partition=i % 3) for i in range(9)])
        assert _values(await log.read(1, 0)) == [b"v1", b"v4", b"v7"]

    async def test_read_at_or_past_the_end_returns_nothing(self, backend: LogBackend) -> None:
        log = backend.topic("a")
        assert await log.read(0, 0) == []
        await log.append([Entry("k", b"v", partition=0) for _ in range(3)])
        assert await log.read(0, 3) == []
        assert await log.read(0, 100) == []

    async def test_records_carry_given_timestamp_or_append_time(self, backend: LogBackend) -> None:
        log = backend.topic("a")
        before = int(time.time() * 1000)
        await log.append(
            [Entry("k", b"given", partition=0, timestamp_ms=1_234), Entry("k", b"now", partition=0)]
        )
        after = int(time.time() * 1000)
        given, now = await log.read(0, 0)
        assert given.timestamp_ms == 1_234
        # Slack for clock granularity (and, for Kafka, a broker clock a little off ours).
        assert before - 5_000 <= now.timestamp_ms <= after + 5_000

    # topics

    async def test_topics_report_their_name_and_partition_count(self, backend: LogBackend) -> None:
        a, b = backend.topic("a"), backend.topic("b")
        assert (a.topic, a.partitions) == ("a", 3)
        assert (b.topic, b.partitions) == ("b", 1)

    async def test_topics_are_independent(self, backend: LogBackend) -> None:
        a, b = backend.topic("a"), backend.topic("b")
        await a.append([Entry("k", b"a%d" % i, partition=0) for i in range(4)])
        # b's offsets start at 0 whatever a holds, and neither sees the other's records.
        assert await b.append([Entry("k", b"b0", partition=0)]) == [(0, 0)]
        assert _values(await b.read(0, 0)) == [b"b0"]
        assert _values(await a.read(0, 0)) == [b"a0", b"a1", b"a2", b"a3"]
        assert await a.end_offsets() == {0: 4, 1: 0, 2: 0}
        assert await b.end_offsets() == {0: 1}

    # 4: tail

    async def test_tail_yields_existing_records_then_wakes_on_later_append(
        self, backend: LogBackend
    ) -> None:
        log = backend.topic("a")
        await log.append([Entry("k", b"old0", partition=0), Entry("k", b"old1", partition=0)])

        async def append_new() -> None:
            await log.append([Entry("k", b"new", partition=0)])

        got = await _tail_across_append(log, {0: 0}, 2, append_new, 1, self.wait_s)
        assert [(r.offset, r.value) for r in got] == [(0, b"old0"), (1, b"old1"), (2, b"new")]

    async def test_tail_of_an_empty_partition_wakes_on_first_append(
        self, backend: LogBackend
    ) -> None:
        log = backend.topic("b")

        async def append_first() -> None:
            # Through another handle: the wake-up must not depend on sharing the Log object.
            await backend.topic("b").append([Entry("k", b"first")])

        got = await _tail_across_append(log, {0: 0}, 0, append_first, 1, self.wait_s)
        assert [(r.partition, r.offset, r.value) for r in got] == [(0, 0, b"first")]

    async def test_tail_starts_at_the_given_offset(self, backend: LogBackend) -> None:
        log = backend.topic("a")
        await log.append([Entry("k", b"v%d" % i, partition=1) for i in range(5)])
        async with _tailing(log, {1: 3}) as batches:
            got = await _take(batches, 2, self.wait_s)
        assert [(r.offset, r.value) for r in got] == [(3, b"v3"), (4, b"v4")]

    async def test_tail_batches_respect_limit(self, backend: LogBackend) -> None:
        log = backend.topic("a")
        await log.append([Entry("k", b"v%d" % i, partition=0) for i in range(10)])
        seen: list[Record] = []
        async with _tailing(log, {0: 0}, limit=3) as batches:
            while len(seen) < 10:
                batch = await asyncio.wait_for(_next_batch(batches), self.wait_s)
                assert len(batch) <= 3
                seen.extend(batch)
        assert [r.offset for r in seen] == list(range(10))

    async def test_tail_ignores_partitions_not_asked_for(self, backend: LogBackend) -> None:
        log = backend.topic("a")

        async def append_elsewhere_then_here() -> None:
            await log.append([Entry("k", b"p1", partition=1)])
            await log.append([Entry("k", b"p2", partition=2)])

        got = await _tail_across_append(log, {2: 0}, 0, append_elsewhere_then_here, 1, self.wait_s)
        assert [(r.partition, r.value) for r in got] == [(2, b"p2")]

    async def test_tail_over_partitions_yields_each_record_once_in_partition_order(
        self, backend: LogBackend
    ) -> None:
        log = backend.topic("a")
        existing = await log.append(
            [Entry(f"k{i}", b"e%d" % i, partition=i % 3) for i in range(15)]
        )
        appended: list[Position] = []

        async def append_more() -> None:
            # Several concurrent appends, so the tail sees them land in some interleaving.
            batches = [
                [Entry(f"n{j}", b"n%d-%d" % (j, i), partition=(i + j) % 3) for i in range(4)]
                for j in range(3)
            ]
            for positions in await asyncio.gather(*(log.append(b) for b in batches)):
                appended.extend(positions)

        got = await _tail_across_append(log, {0: 0, 1: 0, 2: 0}, 15, append_more, 12, self.wait_s)

        positions = [(r.partition, r.offset) for r in got]
        assert len(positions) == len(set(positions)), "a record was yielded twice"
        assert sorted(positions) == sorted(existing + appended)
        for partition, records in _by_partition(got).items():
            assert [r.offset for r in records] == list(range(len(records))), partition
        # Each yielded record is the one stored at its position.
        for partition in range(3):
            assert _by_partition(got)[partition] == await log.read(partition, 0)


    async def test_tail_does_not_repeat_records_after_catching_up(
        self, backend: LogBackend
    ) -> None:
        log = backend.topic("a")
        await log.append([Entry("k", b"e%d" % i, partition=i % 3) for i in range(6)])

        async def append_sentinel() -> None:
            await log.append([Entry("k", b"sentinel", partition=1)])

        got = await _tail_across_append(log, {0: 0, 1: 0, 2: 0}, 6, append_sentinel, 1, self.wait_s)
        # The first record after catching up is the sentinel, not a replay of older ones.
        assert [(r.partition, r.offset, r.value) for r in got[6:]] == [(1, 2, b"sentinel")]

    # 5: end_offsets

    async def test_end_offsets_count_records_per_partition(self, backend: LogBackend) -> None:
        log = backend.topic("a")
        assert await log.end_offsets() == {0: 0, 1: 0, 2: 0}
        await log.append([Entry("k", b"v", partition=p) for p in (0, 0, 2, 0, 2)])
        assert await log.end_offsets() == {0: 3, 1: 0, 2: 2}

    async def test_end_offsets_never_run_ahead_of_readable_records(
        self, backend: LogBackend
    ) -> None:
        log = backend.topic("a")
        # A large append takes a while to become durable; meanwhile every end offset we are
        # shown must already be readable (end_offsets counts records, not promises).
        value = random.Random(3).randbytes(1 << 20)
        append = asyncio.create_task(log.append([Entry("k", value, partition=1)] * 16))
        deadline = asyncio.get_running_loop().time() + self.wait_s * 6
        try:
            while not append.done():
                assert asyncio.get_running_loop().time() < deadline, "append did not finish"
                await asyncio.sleep(0)  # a yield, not a wait: lets the append make progress
                ends = await log.end_offsets()
                if ends[1]:
                    assert await log.read(1, ends[1] - 1, limit=1), f"end {ends[1]} not readable"
            await append
        finally:
            await _cancel(append)
        assert await log.end_offsets() == {0: 0, 1: 16, 2: 0}

    # 6: offset_for_time

    async def test_offset_for_time_finds_first_offset_at_or_after_time(
        self, backend: LogBackend
    ) -> None:
        log = backend.topic("a")
        stamps = [1_000, 2_000, 2_000, 3_000]
        await log.append([Entry("k", b"v", partition=0, timestamp_ms=t) for t in stamps])
        assert await log.offset_for_time(0, 1_000) == 0
        assert await log.offset_for_time(0, 1_500) == 1
        assert await log.offset_for_time(0, 2_000) == 1  # the first of two equal stamps
        assert await log.offset_for_time(0, 2_001) == 3
        assert await log.offset_for_time(0, 3_000) == 3

    async def test_offset_for_time_before_first_record_is_zero(self, backend: LogBackend) -> None:
        log = backend.topic("a")
        await log.append([Entry("k", b"v", partition=0, timestamp_ms=t) for t in (5_000, 6_000)])
        assert await log.offset_for_time(0, 0) == 0
        assert await log.offset_for_time(0, 4_999) == 0

    async def test_offset_for_time_after_last_record_is_none(self, backend: LogBackend) -> None:
        log = backend.topic("a")
        await log.append([Entry("k", b"v", partition=0, timestamp_ms=t) for t in (5_000, 6_000)])
        assert await log.offset_for_time(0, 6_001) is None

    async def test_offset_for_time_of_empty_partition_is_none(self, backend: LogBackend) -> None:
        assert await backend.topic("a").offset_for_time(1, 0) is None

    async def test_offset_for_time_looks_only_at_its_partition(self, backend: LogBackend) -> None:
        log = backend.topic("a")
        await log.append([Entry("k", b"v", partition=0, timestamp_ms=t) for t in (1_000, 9_000)])
        await log.append([Entry("k", b"v", partition=1, timestamp_ms=t) for t in (5_000, 6_000)])
        assert await log.offset_for_time(0, 5_000) == 1
        assert await log.offset_for_time(1, 5_000) == 0
        assert await log.offset_for_time(1, 9_000) is None

    # 1 under concurrency

    async def test_concurrent_appends_get_unique_consecutive_offsets(
        self, backend: LogBackend
    ) -> None:
        log = backend.topic("a")
        tasks, per_task = 50, 20

        async def writer(t: int) -> list[tuple[Position, bytes]]:
            acks = []
            for i in range(per_task):
                value = b"t%d-%d" % (t, i)
                [position] = await log.append([Entry(f"writer-{t}", value)])
                acks.append((position, value))
            return acks

        results = await asyncio.gather(*(writer(t) for t in range(tasks)))
        acks = [ack for task_acks in results for ack in task_acks]
        positions = [position for position, _ in acks]
        assert len(set(positions)) == tasks * per_task
        ends = await log.end_offsets()
        assert sum(ends.values()) == tasks * per_task
        # Consecutive: each partition's offsets are exactly 0..end-1, no gaps.
        for partition, end in ends.items():
            assert sorted(o for p, o in positions if p == partition) == list(range(end))
        # Each acknowledged position holds the value that was acknowledged for it.
        stored = {(r.partition, r.offset): r.value for p in range(3) for r in await log.read(p, 0)}
        assert stored == dict(acks)
        # One writer's appends are sequential, so its offsets grow in its own order.
        for task_acks in results:
            offsets = [o for (_, o), _ in task_acks]
            assert offsets == sorted(offsets)

    async def test_concurrent_batches_stay_contiguous_per_partition(
        self, backend: LogBackend
    ) -> None:
        log = backend.topic("a")

        async def writer(t: int) -> list[Position]:
            return await log.append(
                [Entry(f"w{t}", b"t%d-%d" % (t, i), partition=i % 3) for i in range(20)]
            )

        results = await asyncio.gather(*(writer(t) for t in range(50)))
        # Requirement 1: a batch's entries of one partition get consecutive offsets in order,
        # even while other batches are appended at the same time.
        for positions in results:
            for partition in range(3):
                offsets = [o for p, o in positions if p == partition]
                assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
        assert await log.end_offsets() == {0: 350, 1: 350, 2: 300}

    # values and keys

    async def test_values_and_keys_round_trip_byte_for_byte(self, backend: LogBackend) -> None:
        log = backend.topic("b")
        entries = [
            Entry("plain", b"hello"),
            Entry("ключ/🙂 with spaces\tand\nnewline", bytes(range(256))),
            Entry("empty-value", b""),
            Entry("nul", b"\x00\x00\x00"),
        ]
        await log.append(entries)
        records = await log.read(0, 0)
        assert [(r.key, r.value) for r in records] == [(e.key, e.value) for e in entries]

    async def test_a_one_mebibyte_value_round_trips(self, backend: LogBackend) -> None:
        log = backend.topic("b")
        value = random.Random(7).randbytes(1 << 20)
        [(partition, offset)] = await log.append([Entry("big", value)])
        [record] = await log.read(partition, offset, limit=1)
        assert record.key == "big"
        assert len(record.value) == len(value)
        assert record.value == value
