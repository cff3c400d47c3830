"""The SQLite backend of the Log protocol: the embedded default.

Durability: the file is in WAL mode with synchronous=FULL, so a COMMIT returns only after
the WAL is fsynced; `append` resolves only after its COMMIT. An acknowledged append
survives the process being killed (and, with FULL, a power cut).

An append with sync=False (the dispatcher's picks and outcomes: no client waits on them)
is committed without an fsync (synchronous=NORMAL for a batch with no synced append in
it). It survives the process being killed all the same (the OS has the WAL's pages), and
the next synced commit's fsync makes it durable too, since the WAL is one file written in
order. An OS crash can only lose the WAL's last frames, never one in the middle (SQLite
checks each frame's checksum, chained to the one before): what it loses is a suffix of
the dispatcher's decisions, as if it had stopped a moment earlier. No acknowledged client
write is in that suffix.

Group commit: one writer thread owns the write connection. Appends queue up while a
commit is in progress and the next commit takes every queued append at once — one
fsync per batch of concurrent appends, however many callers there are.

One writer process per file: an exclusive lock on `<path>.lock` keeps a second
`jobledger serve` off the same log. Readers in other processes may open it read-only.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import IO, TypeVar, TypeVarTuple

from jobledger.services.log.chain import Chainer
from jobledger.services.log.chain_upgrade import chain_heads, upgrade_chain
from jobledger.services.log.protocol import (
    Entry,
    LogCorrupt,
    LogError,
    LogIdentity,
    Position,
    Record,
)

T = TypeVar("T")
Args = TypeVarTuple("Args")

SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (name TEXT PRIMARY KEY, partitions INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    chain BLOB,  -- the record's link of the hash chain (services/log/chain.py)
    PRIMARY KEY (topic, partition, offset)
) WITHOUT ROWID;
-- Where each partition's chain ends, written in the commit of its records: a log cut short
-- (its last records deleted) no longer reaches its recorded head (docs/audit.md).
CREATE TABLE IF NOT EXISTS chain_heads (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    link BLOB NOT NULL, PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
-- The log's identity (log_id, epoch), written once: see LogIdentity.
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""
# Rows in one INSERT statement at most: 896 variables, under the 999 of SQLite builds older
# than 3.32. See _insert.
ROWS_PER_INSERT = 128
# Records per partition kept in memory for tails at the head (up to 2x). Each holds its
# encoded value and its decoded envelope (~1.4 kB): 2,000 keeps followers that lag a few
# batches off the disk, without holding every record of a burst (100,000 pending jobs).
RECENT = 2_000
# ... and up to this many while an in-process tail has not read them yet: in a drain the
# projector runs thousands of records behind the dispatcher, and read back from the disk
# they would be decoded a second time.
UNREAD = 12_000
Row = tuple[str, int, int, int, str, bytes, bytes]  # ..., key, value, chain link
# Keys and values are read as the types a Record has, whatever a row holds: SQLite's type
# affinity lets an integer, a real or text into either column, and a row that another
# program (or a bug) wrote so made every reader fail, the start included (fault-injection
# row R14). Read so, it is quarantined like any undecodable record. CAST of a value that
# is already a blob (every row jobledger writes) costs nothing.
SELECT_FROM = (
    "SELECT offset, timestamp_ms, CAST(key AS TEXT), CAST(value AS BLOB) FROM records"
    " WHERE topic = ? AND partition = ? AND offset >= ? ORDER BY offset LIMIT ?"
)


_CORRUPT, _NOTADB = 11, 26  # SQLite's primary result codes for a damaged file


def is_damaged(error: BaseException) -> bool:
    """Does error say a database file is damaged (rather than busy, full or missing)?"""
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(error, sqlite3.DatabaseError) and code is not None \
        and code & 0xFF in (_CORRUPT, _NOTADB)


@contextmanager
def damage_named(path: Path) -> Iterator[None]:
    """Raise a damaged file's error as LogCorrupt: one line naming the file and what to do,
    instead of sqlite3's "database disk image is malformed" from wherever it was read."""
    try:
        yield
    except sqlite3.DatabaseError as error:
        if not is_damaged(error):
            raise
        if error.sqlite_errorcode & 0xFF == _NOTADB:  # the header: damaged, or never a log
            raise LogCorrupt(f"cannot open the log {path}: {error}: give the path of a "
                             "jobledger log; if it is one, it is damaged: restore it from a "
                             "backup") from error
        raise LogCorrupt(f"the log {path} is damaged (sqlite: {error}): restore it from a "
                         "backup, and keep the damaged file aside (PRAGMA integrity_check "
                         "on it lists the damage)") from error


def _connect(path: Path, read_only: bool) -> sqlite3.Connection:
    if read_only:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


class _Append:
    __slots__ = ("topic", "entries", "future", "sync")

    def __init__(self, topic: str, entries: Sequence[Entry], future: asyncio.Future[list[Position]],
                 sync: bool = True):
        self.topic = topic
        self.entries = entries
        self.future = future
        self.sync = sync


class _LogWriter(threading.Thread):
    """Owns the write connection and the next offset of every partition."""

    def __init__(self, conn: sqlite3.Connection, backend: SQLiteLogBackend):
        super().__init__(name="jobledger-log-writer", daemon=True)
        self._conn = conn
        self._backend = backend
        self._queue: deque[_Append] = deque()
        self._wake = threading.Condition()
        self._closing = False
        self._synced = True  # the connection's synchronous is FULL (_connect), else NORMAL
        self.next_offset: dict[tuple[str, int], int] = {}
        self.last_ts: dict[tuple[str, int], int] = {}
        self.chainer = Chainer(chain_heads(conn))
        for topic, part, offset, ts in conn.execute(
            "SELECT topic, partition, MAX(offset), MAX(timestamp_ms) FROM records"
            " GROUP BY topic, partition"
        ):
            self.next_offset[(topic, part)] = offset + 1
            self.last_ts[(topic, part)] = ts

    def submit(self, item: _Append) -> None:
        with self._wake:
            self._queue.append(item)
            self._wake.notify()

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        self.join()
        self._conn.close()

    def run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closing:
                    self._wake.wait()
                if not self._queue:
                    return
                batch = list(self._queue)
                self._queue.clear()
            self._commit(batch)

    def _commit(self, batch: list[_Append]) -> None:
        rows: list[Row] = []
        results: list[tuple[_Append, list[Position] | LogError]] = []
        now = int(time.time() * 1000)
        heads = dict(self.chainer.heads)  # to give back with the offsets if the commit fails
        for item in batch:
            try:
                results.append((item, self._assign(item, now, rows)))
            except LogError as exc:  # this append is refused whole; the others go on
                results.append((item, exc))
        failure: sqlite3.Error | None = None
        try:
            self._sync(any(item.sync for item in batch))
            self._conn.execute("BEGIN IMMEDIATE")
            _insert(self._conn, rows)
            self._seal(rows)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            self._forget(rows)
            self.chainer.heads = heads
            error = LogError(f"append to {self._backend.path} failed: {exc}")
            error.__cause__ = failure = exc  # what it was (faults.py: a full disk passes)
            results, rows = [(item, error) for item, _ in results], []
        self._backend.loop.call_soon_threadsafe(self._backend.delivered, results, rows, failure)

    def _seal(self, rows: list[Row]) -> None:
        """Record where each partition written to now ends, and its head link (one row a
        partition a commit: a few rows, beside the batch's)."""
        heads = {(row[0], row[1]): (row[2] + 1, row[6]) for row in rows}
        self._conn.executemany(
            "INSERT OR REPLACE INTO chain_heads VALUES (?, ?, ?, ?)",
            [(topic, part, end, head) for (topic, part), (end, head) in heads.items()])

    def _sync(self, sync: bool) -> None:
        """fsync the next commit or not (outside a transaction: SQLite's rule)."""
        if sync != self._synced:
            self._conn.execute(f"PRAGMA synchronous={'FULL' if sync else 'NORMAL'}")
            self._synced = sync

    def _assign(self, item: _Append, now: int, rows: list[Row]) -> list[Position]:
        """Give each entry its partition, offset and time; all of them or none. (Runs
        holding the GIL for every entry of a batch enqueue: names are looked up once.)"""
        log = self._backend.topic(item.topic)
        partition_for = log.partition_for
        parts = [partition_for(e.key) if e.partition is None else e.partition for e in item.entries]
        for part in parts:
            if not 0 <= part < log.partitions:
                raise LogError(
                    f"partition {part} out of range for topic {item.topic!r} "
                    f"({log.partitions} partitions)"
                )
        topic, next_offset, last_ts = item.topic, self.next_offset, self.last_ts
        chain = self.chainer.next
        positions: list[Position] = []
        for entry, part in zip(item.entries, parts, strict=True):
            slot = (topic, part)
            offset = next_offset.get(slot, 0)
            # Record time never goes backwards within a partition (like Kafka's
            # LogAppendTime), so time -> offset lookups can binary-search.
            ts = now if entry.timestamp_ms is None else entry.timestamp_ms
            ts = max(ts, last_ts.get(slot, 0))
            next_offset[slot] = offset + 1
            last_ts[slot] = ts
            link = chain(topic, part, offset, entry.key, entry.value)
            rows.append((topic, part, offset, ts, entry.key, entry.value, link))
            positions.append((part, offset))
        return positions

    def _forget(self, rows: list[Row]) -> None:
        """Undo the offsets given to rows whose commit failed."""
        for topic, part, offset, *_ in rows:
            slot = (topic, part)
            self.next_offset[slot] = min(self.next_offset[slot], offset)


@cache  # one per power of two up to ROWS_PER_INSERT
def _insert_sql(rows: int) -> str:
    return "INSERT INTO records VALUES " + ",".join(["(?, ?, ?, ?, ?, ?, ?)"] * rows)


def _insert(conn: sqlite3.Connection, rows: list[Row]) -> None:
    """Insert rows with a few multi-row statements: ROWS_PER_INSERT rows each, then the
    rest in power-of-two sizes (1,000 rows: ten statements; eight texts in all, each
    prepared once and kept in sqlite3's statement cache). Why not executemany: it hands
    the GIL back and forth once a row, and while another thread runs Python (a sync
    handler doing real work) each hand-back waits up to the 5 ms switch interval. Beside
    such a thread, appending 1,000 entries took 3.5–4.4 s with executemany and
    0.13–0.14 s this way (bench/append_beside_busy_handler.py)."""
    flat = [value for row in rows for value in row]
    width = 7  # Row's
    done, size = 0, ROWS_PER_INSERT
    while done < len(rows):
        while size > len(rows) - done:
            size //= 2
        conn.execute(_insert_sql(size), flat[done * width : (done + size) * width])
        done += size


class BulkReader:
    """One partition's records of a log file at a time, as plain (offset, value) rows, on a
    read-only connection of its own: for bulk readers in other processes (a replay's
    workers). No Record per row and no key (a 36-character string built per row): both
    cost a replay more than their use is worth (docs/performance.md, "Figures behind the
    code"). key() looks the key up for the rare record that needs it (one that cannot be
    decoded)."""

    _ROWS = ("SELECT offset, CAST(value AS BLOB) FROM records"
             " WHERE topic = ? AND partition = ? AND offset >= ? AND offset < ?"
             " AND key >= ? AND (? IS NULL OR key < ?) ORDER BY offset LIMIT ?")
    _KEY = ("SELECT CAST(key AS TEXT) FROM records"
            " WHERE topic = ? AND partition = ? AND offset = ?")

    def __init__(self, path: Path, topic: str):
        self.path = path
        self.conn = _connect(path, read_only=True)
        self.topic = topic

    def rows(self, partition: int, end: int, keys: tuple[str, str | None] = ("", None),
             batch: int = 50_000) -> Iterator[list[tuple[int, bytes]]]:
        """The rows below `end` whose key is in the range keys (from, before; None: no
        end), in offset order, `batch` at a time."""
        first, before = keys
        offset = 0
        while offset < end:
            with damage_named(self.path):
                rows = self.conn.execute(self._ROWS, (self.topic, partition, offset, end, first,
                                                      before, before, batch)).fetchall()
            if not rows:
                return
            yield rows
            offset = rows[-1][0] + 1

    def key(self, partition: int, offset: int) -> str:
        with damage_named(self.path):
            (key,) = self.conn.execute(self._KEY, (self.topic, partition, offset)).fetchone()
        return key  # type: ignore[no-any-return]  # sqlite3 rows are untyped

    def close(self) -> None:
        self.conn.close()


def _identity_of(conn: sqlite3.Connection) -> LogIdentity | None:
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.OperationalError:  # no such table: a log from before identities
        return None
    if "log_id" not in meta:
        return None
    return LogIdentity(meta["log_id"], int(meta.get("epoch", 0)))


def partition_end(conn: sqlite3.Connection, topic: str, partition: int) -> int:
    """The next offset of a partition: one look-up in the primary key (a MAX over a GROUP
    BY reads every record: about a second for a million)."""
    (last,) = conn.execute("SELECT MAX(offset) FROM records WHERE topic = ? AND partition = ?",
                           (topic, partition)).fetchone()
    return 0 if last is None else last + 1


def sample_keys(path: Path, topic: str, ends: Mapping[int, int], per_partition: int) -> list[str]:
    """The keys of up to per_partition records spread evenly over each partition, sorted."""
    conn = _connect(path, read_only=True)
    try:
        with damage_named(path):
            return sorted(_sampled_keys(conn, topic, ends, per_partition))
    finally:
        conn.close()


def _sampled_keys(conn: sqlite3.Connection, topic: str, ends: Mapping[int, int],
                  per_partition: int) -> Iterator[str]:
    for partition, end in ends.items():
        for offset in sorted({end * i // per_partition for i in range(per_partition)} - {end}):
            row = conn.execute("SELECT key FROM records WHERE topic = ? AND partition = ?"
                               " AND offset = ?", (topic, partition, offset)).fetchone()
            if row is not None:
                yield row[0]


class SQLiteLog:
    """One topic of a SQLite log file.

    The newest records of each partition are also kept in memory, as they are committed,
    so that tails at the head (the projector, the dispatcher) read them without a query.
    """

    def __init__(self, backend: SQLiteLogBackend, topic: str, partitions: int,
                 ends: dict[int, int]):
        self._backend = backend
        self._topic = topic
        self._partitions = partitions
        self._ends = {p: ends.get(p, 0) for p in range(partitions)}  # committed ends
        self._recent: dict[int, list[Record]] = {p: [] for p in range(partitions)}
        self._tails: list[dict[int, int]] = []  # where each in-process tail has read to
        self._appended: asyncio.Future[None] = backend.loop.create_future()

    @property
    def topic(self) -> str:
        return self._topic

    @property
    def partitions(self) -> int:
        return self._partitions

    def partition_for(self, key: str) -> int:
        return zlib.crc32(key.encode()) % self._partitions

    async def append(self, entries: Sequence[Entry], sync: bool = True) -> list[Position]:
        writer = self._backend.writer
        if writer is None:
            state = "closed" if self._backend.closed else "open read-only"
            raise LogError(f"{self._backend.path} is {state}")
        if not entries:
            return []
        future: asyncio.Future[list[Position]] = self._backend.loop.create_future()
        writer.submit(_Append(self._topic, entries, future, sync))
        return await future

    async def read(self, partition: int, offset: int, limit: int = 1000) -> list[Record]:
        recent = self._read_recent(partition, offset, limit)
        if recent is not None:
            return recent
        return await self._backend.run(self._read, partition, offset, limit)

    def _read_recent(self, partition: int, offset: int, limit: int) -> list[Record] | None:
        """Records from memory, or None when offset is older than what memory holds."""
        recent = self._recent[partition]
        if offset >= self._ends[partition]:
            return []
        if not recent or offset < recent[0].offset:
            return None
        start = offset - recent[0].offset
        return recent[start : start + limit]

    def _read(self, partition: int, offset: int, limit: int) -> list[Record]:
        rows = self._backend.reader.execute(SELECT_FROM, (self._topic, partition, offset, limit))
        return [Record(partition, o, ts, k, v) for o, ts, k, v in rows]

    async def tail(
        self, positions: Mapping[int, int], limit: int = 5000
    ) -> AsyncIterator[list[Record]]:
        pos = dict(positions)
        self._tails.append(pos)
        try:
            while True:
                appended = self._appended  # taken before reading, so no append is missed
                batch: list[Record] = []
                for part, offset in pos.items():
                    if len(batch) >= limit:
                        break
                    got = await self.read(part, offset, limit - len(batch))
                    if got:
                        pos[part] = got[-1].offset + 1
                        batch.extend(got)
                        if len(self._recent[part]) > 2 * RECENT:  # what it held may go
                            self._trim(part, self._recent[part])
                if batch:
                    yield batch
                elif self._backend.writer is None:
                    await asyncio.sleep(0.05)  # read-only: another process writes, nothing wakes us
                else:
                    await asyncio.shield(appended)
        finally:  # by identity: two tails may stand at the same positions
            self._tails = [t for t in self._tails if t is not pos]

    def committed(self, records: list[Record]) -> None:
        """Runs on the event loop after a commit: make records readable, wake tails."""
        for rec in records:
            self._recent[rec.partition].append(rec)
            self._ends[rec.partition] = rec.offset + 1
        for part in {rec.partition for rec in records}:
            recent = self._recent[part]
            if len(recent) > 2 * RECENT:
                self._trim(part, recent)
        appended, self._appended = self._appended, self._backend.loop.create_future()
        appended.set_result(None)

    def _trim(self, partition: int, recent: list[Record]) -> None:
        """Drop the oldest records down to RECENT, keeping those an in-process tail has
        yet to read (up to UNREAD)."""
        end = self._ends[partition]
        keep_from = end - RECENT
        for pos in self._tails:
            keep_from = min(keep_from, pos.get(partition, end))
        keep_from = max(keep_from, end - UNREAD)
        drop = keep_from - recent[0].offset
        if drop >= RECENT // 2:  # amortised: a trim moves the list
            del recent[:drop]

    def forget_before(self, partition: int, start: int) -> None:
        """Drop the records kept in memory before start, cut from the file (cut_log): a
        read before it then finds what a process opening the file finds."""
        recent = self._recent[partition]
        if recent and recent[0].offset < start:
            del recent[: start - recent[0].offset]

    async def end_offsets(self) -> dict[int, int]:
        if self._backend.writer is not None:
            return dict(self._ends)
        return await self._backend.run(self._end_offsets)

    def _end_offsets(self) -> dict[int, int]:
        reader = self._backend.reader
        return {p: partition_end(reader, self._topic, p) for p in range(self._partitions)}

    async def offset_for_time(self, partition: int, timestamp_ms: int) -> int | None:
        return await self._backend.run(self._offset_for_time, partition, timestamp_ms)

    def _offset_for_time(self, partition: int, timestamp_ms: int) -> int | None:
        reader = self._backend.reader
        lo, hi = first_offset(reader, self._topic, partition), self._end_offsets()[partition] - 1
        found = None
        while lo <= hi:  # timestamps are monotonic within a partition
            mid = (lo + hi) // 2
            (ts,) = reader.execute(
                "SELECT timestamp_ms FROM records WHERE topic = ? AND partition = ? AND offset = ?",
                (self._topic, partition, mid),
            ).fetchone()
            if ts >= timestamp_ms:
                found, hi = mid, mid - 1
            else:
                lo = mid + 1
        return found


# The cuts of --log-retention (services/history/log_retention.py): records of a partition
# before next_offset were deleted; link is the chain's link before next_offset (of the
# last record deleted), where verify starts from. Created by the first cut.
CUTS_SCHEMA = """CREATE TABLE IF NOT EXISTS chain_cuts (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    link BLOB NOT NULL, PRIMARY KEY (topic, partition)
) WITHOUT ROWID"""
CUT_TIME = "cut_time_ms"  # meta: the moment of the latest cut (Unix ms)
DELETE_BATCH = 5_000  # records deleted per transaction: appends wait for one batch at most
Slot = tuple[str, int]  # (topic, partition)


def first_offset(conn: sqlite3.Connection, topic: str, partition: int) -> int:
    """The oldest offset a partition still holds (0 if it never was cut, or is empty)."""
    (first,) = conn.execute("SELECT MIN(offset) FROM records WHERE topic = ? AND partition = ?",
                            (topic, partition)).fetchone()
    return 0 if first is None else int(first)


def read_cuts(conn: sqlite3.Connection) -> dict[Slot, tuple[int, bytes]]:
    """Where each cut partition now starts, and the chain's link before it ({}: never cut)."""
    try:
        rows = conn.execute("SELECT topic, partition, next_offset, link FROM chain_cuts")
        return {(t, p): (o, bytes(link)) for t, p, o, link in rows.fetchall()}
    except sqlite3.OperationalError:  # no such table: a log never cut
        return {}


def read_cut_time(conn: sqlite3.Connection) -> int | None:
    """The moment of the latest cut (Unix ms; None: never cut)."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (CUT_TIME,)).fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row is None else int(row[0])


def cut_log(path: Path, starts: Mapping[Slot, int]) -> int:
    """Cut the log file: record that each partition now starts at starts[slot] (with the
    link before it) and the cut's moment (the newest time of a record cut: an as_of at
    or after it resolves at or after every start), in one transaction, then delete the records
    before every recorded start, DELETE_BATCH per transaction (a crash part-way leaves
    records that the next cut deletes; readers go by the recorded starts). Runs on a
    connection of its own, beside the writer thread. How many records were deleted."""
    conn = _connect(path, read_only=False)
    try:
        with damage_named(path):
            _record_cut(conn, starts)
            return _delete_cut(conn)
    finally:
        conn.close()


def _record_cut(conn: sqlite3.Connection, starts: Mapping[Slot, int]) -> None:
    conn.execute(CUTS_SCHEMA)
    conn.execute("BEGIN IMMEDIATE")
    try:
        recorded = read_cuts(conn)
        time_ms = read_cut_time(conn) or 0
        rows = []
        for (topic, part), start in starts.items():
            if start <= recorded.get((topic, part), (0, b""))[0]:
                continue
            row = conn.execute("SELECT chain, timestamp_ms FROM records WHERE topic = ?"
                               " AND partition = ? AND offset = ?",
                               (topic, part, start - 1)).fetchone()
            if row is None or row[0] is None:
                raise LogError(f"cannot cut {topic}/{part} at {start}: the log has no chained "
                               f"record at {start - 1}")
            rows.append((topic, part, start, row[0]))
            time_ms = max(time_ms, row[1])
        conn.executemany("INSERT OR REPLACE INTO chain_cuts VALUES (?, ?, ?, ?)", rows)
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (CUT_TIME, str(time_ms)))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _delete_cut(conn: sqlite3.Connection) -> int:
    deleted = 0
    for (topic, part), (start, _link) in read_cuts(conn).items():
        while True:
            (first,) = conn.execute("SELECT MIN(offset) FROM records WHERE topic = ?"
                                    " AND partition = ?", (topic, part)).fetchone()
            if first is None or first >= start:
                break
            conn.execute("BEGIN IMMEDIATE")
            done = conn.execute("DELETE FROM records WHERE topic = ? AND partition = ?"
                                " AND offset < ?", (topic, part, min(start, first + DELETE_BATCH)))
            conn.execute("COMMIT")
            deleted += done.rowcount
    return deleted


class SQLiteLogBackend:
    """A log file with its topics. Use `await SQLiteLogBackend.open(path, partitions)`."""

    def __init__(self, path: Path, loop: asyncio.AbstractEventLoop, read_only: bool):
        self.path = path
        self.loop = loop
        self.read_only = read_only
        self.writer: _LogWriter | None = None
        self.reader: sqlite3.Connection
        self._lock_file: IO[bytes] | None = None
        self._topics: dict[str, SQLiteLog] = {}
        self._identity: LogIdentity | None = None
        # The first error of the commits failing now, and since when (a full disk); None
        # once a commit succeeds. /health reports it (services/node/embedded.py).
        self.failing: tuple[sqlite3.Error, datetime] | None = None
        self.closed = False
        # Reads run on one thread of their own, which owns the read connection.
        self._read_pool = ThreadPoolExecutor(1, thread_name_prefix="jobledger-log-reader")

    @classmethod
    async def open(
        cls, path: str | Path, partitions: Mapping[str, int], read_only: bool = False
    ) -> SQLiteLogBackend:
        """Open (creating if needed) the log at path. Topics already in the file keep their
        partition count; new ones in `partitions` are created."""
        self = cls(Path(path), asyncio.get_running_loop(), read_only)
        try:
            await self.run(self._open_sync, dict(partitions))
        except BaseException as error:
            await self.close()
            if isinstance(error, OSError | sqlite3.Error):  # a folder or file it cannot use
                raise LogError(f"cannot open the log {self.path}: {error}: give the path of a "
                               "jobledger log, or of a new file in a folder you can write"
                               ) from error
            raise
        return self

    def _open_sync(self, partitions: dict[str, int]) -> None:
        if not self.read_only:
            self._lock()
            conn = _connect(self.path, read_only=False)
            conn.executescript(SCHEMA)
            for name, count in partitions.items():
                conn.execute("INSERT OR IGNORE INTO topics VALUES (?, ?)", (name, count))
            conn.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)", [
                ("log_id", str(uuid.uuid4())), ("epoch", str(int(time.time() * 1000)))])
            upgrade_chain(conn)
            self.writer = _LogWriter(conn, self)
        elif not self.path.exists():
            raise LogError(f"no log at {self.path}")
        self.reader = _connect(self.path, read_only=True)
        self._identity = _identity_of(self.reader)
        for name, count in self.reader.execute("SELECT name, partitions FROM topics").fetchall():
            ends = {p: partition_end(self.reader, name, p) for p in range(count)}
            self._topics[name] = SQLiteLog(self, name, count, ends)
        if self.writer is not None:
            self.writer.start()

    async def identity(self) -> LogIdentity | None:
        """The log's identity; None for a log from before identities opened read-only."""
        return self._identity

    def _lock(self) -> None:
        # "ab": opening must not wipe the holder's pid before we know we hold the lock.
        self._lock_file = open(f"{self.path}.lock", "ab")  # noqa: SIM115 - held while open
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            self._lock_file = None
            raise LogError(
                f"{self.path} is already open for writing by process {self._holder()} (its pid "
                f"is in {self.path}.lock): stop that process, or give this one another log file"
            ) from None
        self._lock_file.truncate(0)
        self._lock_file.write(str(os.getpid()).encode())
        self._lock_file.flush()

    def _holder(self) -> str:
        try:
            return Path(f"{self.path}.lock").read_text().strip() or "?"
        except OSError:
            return "?"

    async def run(self, fn: Callable[[*Args], T], *args: *Args) -> T:
        with damage_named(self.path):
            return await self.loop.run_in_executor(self._read_pool, fn, *args)

    def topic(self, name: str) -> SQLiteLog:
        try:
            return self._topics[name]
        except KeyError:
            raise LogError(f"topic {name!r} does not exist in {self.path}") from None

    def delivered(
        self, results: list[tuple[_Append, list[Position] | LogError]], rows: list[Row],
        failure: sqlite3.Error | None = None,
    ) -> None:
        """Runs on the event loop after a commit: publish the records, resolve appends.
        failure: why the commit failed (kept in `failing` until a commit succeeds)."""
        if failure is None:
            self.failing = None
        elif self.failing is None:
            self.failing = (failure, datetime.now(UTC))
        by_topic: dict[str, list[Record]] = {}
        for topic, part, offset, ts, key, value, _link in rows:
            by_topic.setdefault(topic, []).append(Record(part, offset, ts, key, value))
        for topic, records in by_topic.items():
            self._topics[topic].committed(records)
        for item, outcome in results:
            if item.future.done():
                continue
            if isinstance(outcome, LogError):
                item.future.set_exception(outcome)
            else:
                item.future.set_result(outcome)

    async def close(self) -> None:
        self.closed = True
        if self.writer is not None:
            await asyncio.to_thread(self.writer.close)
            self.writer = None
        await self.loop.run_in_executor(self._read_pool, self._close_reader)
        self._read_pool.shutdown(wait=True)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _close_reader(self) -> None:
        reader = getattr(self, "reader", None)
        if reader is not None:
            reader.close()
