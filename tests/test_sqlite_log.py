"""The SQLite Log backend: the shared contract, plus what only a file-backed log promises."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import IO

import pytest

from jobledger.services.log import sqlite as sqlite_log
from jobledger.services.log.protocol import Entry, LogBackend, LogError
from jobledger.services.log.sqlite import SQLiteLogBackend
from tests.support.log_contract import LogContract

PARTITIONS: Mapping[str, int] = {"a": 3, "b": 1}
CHILD_DEADLINE_S = 60.0  # the longest any test waits on a child process


class TestSQLiteLog(LogContract):
    @pytest.fixture
    async def backend(self, tmp_path: Path) -> AsyncIterator[LogBackend]:
        backend = await SQLiteLogBackend.open(tmp_path / "log.db", partitions=PARTITIONS)
        yield backend
        await backend.close()


# --- file lifetime -------------------------------------------------------------------------


async def test_reopening_keeps_records_and_continues_offsets(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    backend = await SQLiteLogBackend.open(path, partitions=PARTITIONS)
    a, b = backend.topic("a"), backend.topic("b")
    await a.append([Entry(f"k{i}", b"a%d" % i, partition=i % 3) for i in range(7)])
    await b.append([Entry("k", b"b0")])
    before = {p: await a.read(p, 0) for p in range(3)}
    await backend.close()

    backend = await SQLiteLogBackend.open(path, partitions=PARTITIONS)
    try:
        a, b = backend.topic("a"), backend.topic("b")
        assert {p: await a.read(p, 0) for p in range(3)} == before
        assert await a.end_offsets() == {0: 3, 1: 2, 2: 2}
        assert await b.end_offsets() == {0: 1}
        # Offsets continue where they ended rather than restarting at 0.
        assert await a.append([Entry("k", b"next", partition=1)]) == [(1, 2)]
        assert await b.append([Entry("k", b"b1")]) == [(0, 1)]
    finally:
        await backend.close()


@pytest.mark.parametrize("sizes", [(1,), (3, 128), (127, 129), (1000, 5, 300)])
async def test_batches_of_any_size_land_whole_and_in_order_on_disk(
    tmp_path: Path, sizes: tuple[int, ...]
) -> None:
    """The writer splits a commit into multi-row INSERTs of power-of-two sizes: every row
    of every batch reaches the file once, at the position its append returned."""
    path = tmp_path / "log.db"
    backend = await SQLiteLogBackend.open(path, partitions=PARTITIONS)
    batches = [[Entry(f"k{n}-{i}", b"v%d-%d" % (n, i), partition=i % 3) for i in range(size)]
               for n, size in enumerate(sizes)]
    # Concurrent appends: the writer may take several into one commit.
    returned = await asyncio.gather(*(backend.topic("a").append(b) for b in batches))
    await backend.close()

    backend = await SQLiteLogBackend.open(path, partitions=PARTITIONS)  # read from disk
    try:
        on_disk = {(p, r.offset): (r.key, r.value)
                   for p in range(3) for r in await backend.topic("a").read(p, 0, limit=5000)}
        expected = {pos: (e.key, e.value)
                    for batch, positions in zip(batches, returned, strict=True)
                for e, pos in zip(batch, positions, strict=True)}
        assert on_disk == expected
    finally:
        await backend.close()


async def test_a_lagging_tail_reads_from_memory_and_memory_shrinks_once_it_caught_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records an in-process tail has not read yet stay in memory (up to UNREAD a
    partition), so a follower running behind (the projector in a drain) does not read them
    back from the disk and decode them again; once read, memory goes back to RECENT."""
    monkeypatch.setattr(sqlite_log, "RECENT", 10)
    monkeypatch.setattr(sqlite_log, "UNREAD", 100)
    backend = await SQLiteLogBackend.open(tmp_path / "log.db", partitions={"t": 1})
    log = backend.topic("t")
    from_disk: list[int] = []
    read = log._read
    monkeypatch.setattr(log, "_read", lambda p, o, n: from_disk.append(o) or read(p, o, n))
    try:
        await log.append([Entry("k", b"0")])
        tail = log.tail({0: 0}, limit=1000)
        assert [r.value for r in await anext(tail)] == [b"0"]
        for i in range(1, 81, 5):  # 80 records the tail does not read yet
            await log.append([Entry("k", b"%d" % j) for j in range(i, i + 5)])
        assert [r.offset for r in await anext(tail)] == list(range(1, 81))
        assert from_disk == []

        await log.append([Entry("k", b"81")])  # the tail has read everything: trimmed
        assert [r.offset for r in await log.read(0, 0, limit=100)] == list(range(82))
        assert from_disk == [0]  # the oldest records came from the disk again
        await tail.aclose()
    finally:
        await backend.close()


async def test_a_tail_further_behind_than_unread_reads_the_rest_from_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_log, "RECENT", 10)
    monkeypatch.setattr(sqlite_log, "UNREAD", 30)
    backend = await SQLiteLogBackend.open(tmp_path / "log.db", partitions={"t": 1})
    log = backend.topic("t")
    try:
        await log.append([Entry("k", b"0")])
        tail = log.tail({0: 0}, limit=1000)
        await anext(tail)
        for i in range(1, 101):
            await log.append([Entry("k", b"%d" % i)])
        got = await anext(tail)
        assert [r.offset for r in got] == list(range(1, 101))  # all of them, in order
        await tail.aclose()
    finally:
        await backend.close()


async def test_unknown_topic_raises_log_error(tmp_path: Path) -> None:
    backend = await SQLiteLogBackend.open(tmp_path / "log.db", partitions=PARTITIONS)
    try:
        with pytest.raises(LogError):
            backend.topic("c")
    finally:
        await backend.close()


async def test_second_writer_in_same_process_raises_log_error_naming_path(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.db"
    first = await SQLiteLogBackend.open(path, partitions=PARTITIONS)
    try:
        await _assert_open_refused(path)
    finally:
        await first.close()
    # Closing the first writer releases the file for the next one.
    again = await SQLiteLogBackend.open(path, partitions=PARTITIONS)
    await again.close()


async def _assert_open_refused(path: Path) -> None:
    try:
        second = await SQLiteLogBackend.open(path, partitions=PARTITIONS)
    except LogError as error:
        assert str(path) in str(error)
    else:
        await second.close()
        pytest.fail(f"a second writer opened {path} while the first held it")


# --- real processes ------------------------------------------------------------------------

# A writer that acknowledges each append on stdout ("<i> <partition> <offset>") only after
# append() returned, i.e. once the backend says the entry is durable. Every other append is
# unsynced (sync=False, the dispatcher's kind): it must survive a kill all the same.
_APPENDER = """
import asyncio, sys
from jobledger.services.log.protocol import Entry
from jobledger.services.log.sqlite import SQLiteLogBackend

async def main(path):
    backend = await SQLiteLogBackend.open(path, partitions={"a": 3, "b": 1})
    log = backend.topic("a")
    i = 0
    while True:
        [(p, o)] = await log.append([Entry(f"k{i}", b"v%d" % i, partition=i % 3)],
                                    sync=i % 2 == 0)
        print(i, p, o, flush=True)
        i += 1

asyncio.run(main(sys.argv[1]))
"""

# A writer that opens the file, says so, and holds it until its stdin closes.
_HOLDER = """
import asyncio, sys
from jobledger.services.log.sqlite import SQLiteLogBackend

async def main(path):
    backend = await SQLiteLogBackend.open(path, partitions={"a": 3, "b": 1})
    print("open", flush=True)
    sys.stdin.read()
    await backend.close()

asyncio.run(main(sys.argv[1]))
"""

# Prints partition_for of the keys given on argv, under whatever PYTHONHASHSEED it runs with.
_PARTITIONER = """
import asyncio, sys
from jobledger.services.log.sqlite import SQLiteLogBackend

async def main(path, keys):
    backend = await SQLiteLogBackend.open(path, partitions={"a": 3, "b": 1})
    log = backend.topic("a")
    print(" ".join(str(log.partition_for(k)) for k in keys), flush=True)
    await backend.close()

asyncio.run(main(sys.argv[1], sys.argv[2:]))
"""


async def _spawn(
    script: str,
    *args: str,
    stdin: int | None = None,
    stderr: IO[bytes] | None = None,
    env: Mapping[str, str] | None = None,
) -> asyncio.subprocess.Process:
    """Run `script` in a fresh interpreter, its stdout piped to us."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        *args,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
        env=env,
    )


async def _readline(proc: asyncio.subprocess.Process, deadline: float) -> str:
    """One line of the child's stdout, failing at the deadline or if the child died."""
    assert proc.stdout is not None
    remaining = deadline - asyncio.get_running_loop().time()
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), max(remaining, 0.0))
    except TimeoutError:
        raise AssertionError("child process gave no output before the deadline") from None
    assert line, f"child process ended early (exit code {await proc.wait()})"
    return line.decode()


async def _kill(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the one child we started (if still running) and reap it."""
    if proc.returncode is None:
        os.kill(proc.pid, signal.SIGKILL)
    await asyncio.wait_for(proc.communicate(), CHILD_DEADLINE_S)


@pytest.mark.slow
async def test_every_acknowledged_append_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    deadline = asyncio.get_running_loop().time() + CHILD_DEADLINE_S
    with open(tmp_path / "child.err", "wb") as stderr:
        proc = await _spawn(_APPENDER, str(path), stderr=stderr)
        acks: list[tuple[int, int, int]] = []
        try:
            while len(acks) < 200:
                i, p, o = map(int, (await _readline(proc, deadline)).split())
                acks.append((i, p, o))
        finally:
            # Killed mid-loop: most likely with an append in flight, never closed cleanly.
            await _kill(proc)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "child.err").read_text()

    backend = await SQLiteLogBackend.open(path, partitions=PARTITIONS)
    try:
        log = backend.topic("a")
        records = [r for p in range(3) for r in await log.read(p, 0, limit=100_000)]
        stored = {(r.partition, r.offset): r for r in records}
        for i, p, o in acks:
            assert (p, o) in stored, f"acknowledged append {i} at {(p, o)} was lost"
            assert (stored[(p, o)].key, stored[(p, o)].value) == (f"k{i}", b"v%d" % i)
        # Offsets are still dense after the crash: the next append follows the last record.
        ends = await log.end_offsets()
        assert all(sorted(o for q, o in stored if q == p) == list(range(ends[p])) for p in ends)
        assert await log.append([Entry("k", b"after", partition=0)]) == [(0, ends[0])]
    finally:
        await backend.close()


@pytest.mark.slow
async def test_second_writer_in_another_process_raises_log_error_naming_path(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.db"
    deadline = asyncio.get_running_loop().time() + CHILD_DEADLINE_S
    proc = await _spawn(_HOLDER, str(path), stdin=asyncio.subprocess.PIPE)
    try:
        assert (await _readline(proc, deadline)).strip() == "open"
        await _assert_open_refused(path)
        # Closing its stdin lets the holder close the log and exit on its own.
        assert proc.stdin is not None
        proc.stdin.close()
        await asyncio.wait_for(proc.wait(), CHILD_DEADLINE_S)
        assert proc.returncode == 0
    finally:
        await _kill(proc)


@pytest.mark.slow
async def test_partition_for_does_not_depend_on_the_process_hash_seed(tmp_path: Path) -> None:
    # Keys are routed again after every restart: Python's salted hash() would move them.
    keys = [f"job-{i}" for i in range(50)]
    backend = await SQLiteLogBackend.open(tmp_path / "log.db", partitions=PARTITIONS)
    try:
        here = [backend.topic("a").partition_for(k) for k in keys]
    finally:
        await backend.close()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = await _spawn(_PARTITIONER, str(tmp_path / f"seed{seed}.db"), *keys, env=env)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), CHILD_DEADLINE_S)
        finally:
            await _kill(proc)
        assert [int(p) for p in out.split()] == here, f"PYTHONHASHSEED={seed}"
