"""The read-model store: one SQLite file (aiosqlite) holding every read model.

Each batch is written in one transaction together with the model's checkpoint (the next
offset of each partition), so a batch is applied entirely or not at all, and a record
below the checkpoint is known to be applied already. The file is a cache of the log,
written without fsyncs and rebuilt after an OS crash (store_file.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from functools import lru_cache
from importlib import resources
from itertools import chain, compress
from operator import is_not
from pathlib import Path
from typing import Any, cast

import aiosqlite
import msgspec

from jobledger.schemas import SECURITY
from jobledger.schemas.codec import Undecodable

from .fold import JobsChange
from .jobs import JobState
from .keys import KeyState, key_from_row, key_row
from .queues import QueueState
from .rows import job_from_row, job_row, queue_row, worker_from_row, worker_row
from .schedules import ScheduleState, schedule_from_row, schedule_row
from .store_file import CLOSED, boot_mark, discard_if_crashed, fsync_files
from .users import UserState, user_from_row, user_row
from .workers import WorkerState


def sql_file(name: str) -> str:
    """The text of one of the package's SQL files (schema.sql, indexes.sql)."""
    return resources.files("jobledger.projections").joinpath(name).read_text()


Row = tuple[Any, ...]
WORKER_COLUMNS = len(WorkerState.__struct_fields__)  # the table's columns: the state's fields


def fetch_all(
    db: aiosqlite.Connection, sql: str, parameters: Iterable[Any] | None = None
) -> Awaitable[list[Row]]:
    """db.execute_fetchall(sql, parameters), typed as what it returns here: aiosqlite
    declares Iterable[sqlite3.Row], but with no row_factory set the rows are tuples in a list."""
    return cast("Awaitable[list[Row]]", db.execute_fetchall(sql, parameters))


IN_CHUNK = 900  # ids per IN (...) query (SQLite's limit of variables was 999)
_LIVE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=OFF")
_BULK_PRAGMAS = (
    "PRAGMA journal_mode=MEMORY", "PRAGMA synchronous=OFF", "PRAGMA cache_size=-131072")
_CHECKSUM_CHUNK = 10_000  # rows hashed at a time
_json = msgspec.json.Encoder()

UPSERT_COUNT = (
    "INSERT INTO job_counts VALUES (?, ?, ?)"
    " ON CONFLICT DO UPDATE SET count = count + excluded.count"
)
UPSERT_DEPTH = (
    "INSERT INTO queue_depth VALUES (?, ?)"
    " ON CONFLICT DO UPDATE SET count = count + excluded.count"
)
UPSERT_ENDED = (
    "INSERT INTO runs_ended VALUES (?, ?, ?)"
    " ON CONFLICT DO UPDATE SET count = count + excluded.count"
)
UPSERT_QUEUE_COUNT = ("INSERT INTO queue_counts VALUES (?, ?, ?)"
                      " ON CONFLICT DO UPDATE SET count = count + excluded.count")
UPSERT_ENDED_BY = ("INSERT INTO runs_ended_by VALUES (?, ?, ?, ?, ?)"
                   " ON CONFLICT DO UPDATE SET count = count + excluded.count")
UPSERT_MOVES = ("INSERT INTO pending_moves VALUES (?, ?, ?)"
                " ON CONFLICT DO UPDATE SET delta = delta + excluded.delta")
UPSERT_PROCESSING = (
    "INSERT INTO processing VALUES (1, ?, ?) ON CONFLICT DO UPDATE"
    " SET total_ms = total_ms + excluded.total_ms, runs = runs + excluded.runs"
)


_NONES = (None,) * 64  # compared with a row's values, column by column
_ROWS_PER_INSERT = 64  # rows per multi-row INSERT, at most
_MAX_VARIABLES = 999  # SQLite's limit before 3.32 (32,766 since): a build may still have it


@lru_cache(maxsize=1024)  # (table, pattern of NULLs, rows) seen: a few dozen
def _values_sql(insert: str, present: tuple[bool, ...], rows: int) -> str:
    row = f"({','.join('?' if p else 'NULL' for p in present)})"
    return f"{insert} VALUES {','.join([row] * rows)}"


class Transaction:
    """Statements to run in one SQLite transaction on aiosqlite's thread."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, Any, bool]] = []

    def many(self, sql: str, rows: Sequence[Any]) -> bool:
        if rows:
            self.statements.append((sql, rows, True))
        return bool(rows)

    def rows(self, insert: str, rows: Iterable[Sequence[Any]], nulls: bool = True) -> None:
        """`insert` ("INSERT ... INTO table") of rows, up to 64 rows a statement, NULLs
        written into the SQL. Why: executemany costs a per-row overhead beyond SQLite's
        own work and hands the GIL back and forth once a row; and sqlite3 binds None
        through its adapter lookup (GIL held), a dozen in a jobs row (docs/performance.md,
        "Figures behind the code"). One
        statement per pattern of NULLs: rows of one batch have distinct keys, so their
        order does not matter. nulls=False: rows (all of one width) have none."""
        if not nulls:
            rows = list(rows)
            if rows:
                self.flat(insert, len(rows[0]), list(chain.from_iterable(rows)))
            return
        groups: dict[tuple[bool, ...], list[Any]] = {}
        for row in rows:
            present = tuple(map(is_not, row, _NONES))
            values = groups.get(present)
            if values is None:
                values = groups[present] = []
            values.extend(compress(row, present))
        for present, values in groups.items():
            self._insert_values(insert, present, values)

    def flat(self, insert: str, width: int, values: list[Any]) -> None:
        """As rows(nulls=False), of rows given flat: width values a row, one after another."""
        if values:
            self._insert_values(insert, (True,) * width, values)

    def _insert_values(self, insert: str, present: tuple[bool, ...], values: list[Any]) -> None:
        """Multi-row INSERTs of the flat values of rows with one pattern of NULLs (never
        all NULL: every table has a NOT NULL key)."""
        width = sum(present)
        step = min(_ROWS_PER_INSERT, _MAX_VARIABLES // width) * width
        whole = len(values) // step * step
        if whole:
            self.statements.append((_values_sql(insert, present, step // width),
                                    [values[i : i + step] for i in range(0, whole, step)], True))
        if whole < len(values):
            rest = values[whole:]
            self.statements.append((_values_sql(insert, present, len(rest) // width), rest, False))

    def one(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.statements.append((sql, params, False))

    def run(self, db: aiosqlite.Connection) -> None:
        conn = db._conn  # on aiosqlite's own thread: the sqlite3 connection is ours here
        if conn.in_transaction:  # inside an as_of fold, which rolls everything back
            self._run_nested(conn)
            return
        conn.execute("BEGIN")
        try:
            for sql, params, many in self.statements:
                (conn.executemany if many else conn.execute)(sql, params)
            conn.execute("COMMIT")
        except BaseException:
            # SQLite rolls back by itself on some errors (SQLITE_FULL, SQLITE_IOERR): a
            # ROLLBACK then raises "no transaction is active", masking the real error.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _run_nested(self, conn: Any) -> None:
        """The statements inside a transaction someone else holds open (a point-in-time
        fold, services/history/): a savepoint keeps the batch all or nothing."""
        conn.execute("SAVEPOINT batch")
        try:
            for sql, params, many in self.statements:
                (conn.executemany if many else conn.execute)(sql, params)
        except BaseException:
            conn.execute("ROLLBACK TO batch")
            raise
        finally:
            conn.execute("RELEASE batch")


class ReadModelStore:
    def __init__(self, db: aiosqlite.Connection, path: Path, writer: bool = True):
        self.db = db
        self.path = path
        self.writer = writer  # the one that marks the file open and durable on close
        # job_events, job_event_ids and runs written with each jobs batch. Off in an as_of
        # fold (services/history/asof.py): no point-in-time query reads them.
        self.audit_rows = True

    @classmethod
    async def open(cls, path: str | Path, bulk: bool = False) -> ReadModelStore:
        """Open (creating) the read models. bulk: a fresh file being filled by a replay
        (services/replay/rebuild.py), renamed into place only once complete, so a crash means
        replaying again: no secondary indexes until finish_bulk(), no syncs, the rollback
        journal in memory (a failed batch still rolls back) and a 128 MiB page cache.
        Live: a file an OS crash may have damaged is rebuilt (store_file.py)."""
        path = Path(path)
        if not bulk:
            discard_if_crashed(path)
        db = await aiosqlite.connect(path, isolation_level=None)
        if not bulk:  # durably marked open before any write without an fsync
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute(f"PRAGMA user_version = {boot_mark()}")
        for pragma in _BULK_PRAGMAS if bulk else _LIVE_PRAGMAS:
            await db.execute(pragma)
        await db.executescript(sql_file("schema.sql"))
        if not bulk:
            await db.executescript(sql_file("indexes.sql"))
        return cls(db, path)

    @classmethod
    async def open_to_read(cls, path: str | Path) -> ReadModelStore:
        """Open read models that another store may be writing (`jobledger replay --live`
        checksums a running server's): no schema, no mark, no writes."""
        db = await aiosqlite.connect(path, isolation_level=None)
        await db.execute("PRAGMA query_only=1")
        return cls(db, Path(path), writer=False)

    async def finish_bulk(self) -> None:
        """Build the secondary indexes in one pass each and leave the file as a live store
        is (WAL, synchronous=OFF; close() makes it durable)."""
        await self.db.executescript(sql_file("indexes.sql"))
        for pragma in _LIVE_PRAGMAS:
            await self.db.execute(pragma)

    async def close(self) -> None:
        """Make every page durable, then mark the file closed (durably too)."""
        if not self.writer:
            await self.db.close()
            return
        await self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        await self.db.execute("PRAGMA synchronous=FULL")
        fsync_files(self.path)
        await self.db.execute(f"PRAGMA user_version = {CLOSED}")
        await self.db.close()

    async def record_source(self, log_id: str, epoch: int) -> None:
        """Record which log the read models are folded from (the log_source table)."""
        await self.db.execute("INSERT OR REPLACE INTO log_source VALUES (1, ?, ?)",
                              (log_id, epoch))

    async def checkpoints(self, model: str) -> dict[int, int]:
        rows = await fetch_all(
            self.db, "SELECT partition, next_offset FROM checkpoints WHERE model = ?", (model,)
        )
        return {p: o for p, o in rows}

    # -- loading reducer states ---------------------------------------------------------

    async def load_jobs(self, job_ids: Iterable[str]) -> dict[str, JobState]:
        rows = await self._select_in("SELECT * FROM jobs WHERE job_id IN ({})", list(job_ids))
        return {row[0]: job_from_row(row) for row in rows}

    async def load_unfinished_jobs(self) -> list[JobState]:
        rows = await fetch_all(
            self.db, "SELECT * FROM jobs WHERE status IN ('scheduled', 'pending', 'in_progress')"
        )
        return [job_from_row(row) for row in rows]

    async def load_queues(self) -> dict[str, QueueState]:
        rows = await fetch_all(self.db, "SELECT queue, paused, updated_at FROM queues")
        return {q: QueueState(q, bool(p), t) for q, p, t in rows}

    async def load_workers(self, worker_ids: Iterable[str]) -> dict[str, WorkerState]:
        rows = await self._select_in("SELECT * FROM workers WHERE worker_id IN ({})",
                                     list(worker_ids))
        return {row[0]: worker_from_row(row) for row in rows}

    async def load_schedules(
        self, schedule_ids: Iterable[str] | None = None
    ) -> dict[str, ScheduleState]:
        """Schedules by id, removed ones included; every schedule when ids is None."""
        if schedule_ids is None:
            rows = await fetch_all(self.db, "SELECT * FROM schedules")
        else:
            rows = await self._select_in("SELECT * FROM schedules WHERE schedule_id IN ({})",
                                         list(schedule_ids))
        return {row[0]: schedule_from_row(row) for row in rows}

    async def load_keys(self, key_ids: Iterable[str] | None = None) -> dict[str, KeyState]:
        """API keys by id, revoked ones included; every key when ids is None."""
        if key_ids is None:
            rows = await fetch_all(self.db, "SELECT * FROM api_keys")
        else:
            rows = await self._select_in("SELECT * FROM api_keys WHERE key_id IN ({})",
                                         list(key_ids))
        return {row[0]: key_from_row(row) for row in rows}

    async def load_users(self, usernames: Iterable[str] | None = None) -> dict[str, UserState]:
        """Users by username, removed ones included; every user when usernames is None."""
        if usernames is None:
            rows = await fetch_all(self.db, "SELECT * FROM users")
        else:
            rows = await self._select_in("SELECT * FROM users WHERE username IN ({})",
                                         list(usernames))
        return {row[0]: user_from_row(row) for row in rows}

    async def _select_in(self, sql: str, keys: Sequence[str]) -> list[Any]:
        out: list[Any] = []
        for i in range(0, len(keys), IN_CHUNK):
            chunk = keys[i : i + IN_CHUNK]
            placeholders = ",".join("?" * len(chunk))
            out.extend(await fetch_all(self.db, sql.format(placeholders), chunk))
        return out

    # -- writing one batch ----------------------------------------------------------------

    async def write_jobs(
        self, change: JobsChange, positions: Mapping[int, int], bad: Sequence[Undecodable]
    ) -> None:
        tx = Transaction()
        last = change.positions
        tx.rows("INSERT OR REPLACE INTO jobs",
                (job_row(s, last[job_id][1]) for job_id, s in change.jobs.items()))
        if self.audit_rows:
            tx.flat("INSERT OR IGNORE INTO job_events", 3, change.events)
            tx.flat("INSERT OR IGNORE INTO job_event_ids", 3, change.ids)
            tx.rows("INSERT OR REPLACE INTO runs", change.runs.values())
        tx.many("INSERT OR REPLACE INTO queues VALUES (?, ?, ?)",
                [queue_row(q) for q in change.queues.values()])
        stats = change.stats
        # Rows that reach zero are deleted, so the tables do not depend on how the log
        # was cut into batches (a +1 and a -1 in one batch never write a row at all).
        if tx.many(UPSERT_COUNT, [(t, s, n) for (t, s), n in stats.counts.items() if n]):
            tx.one("DELETE FROM job_counts WHERE count = 0")
        if tx.many(UPSERT_QUEUE_COUNT,
                   [(q, s, n) for (q, s), n in stats.queue_counts.items() if n]):
            tx.one("DELETE FROM queue_counts WHERE count = 0")
        if tx.many(UPSERT_DEPTH, [(band, n) for band, n in stats.depth.items() if n]):
            tx.one("DELETE FROM queue_depth WHERE count = 0")
        tx.many(UPSERT_ENDED, [(m, o, n) for (m, o), n in stats.ended.items() if n])
        tx.many(UPSERT_ENDED_BY, [(*key, n) for key, n in stats.ended_by.items() if n])
        if tx.many(UPSERT_MOVES, [(m, q, n) for (m, q), n in stats.pending_moves.items() if n]):
            tx.one("DELETE FROM pending_moves WHERE delta = 0")
        if stats.processed_runs:
            tx.one(UPSERT_PROCESSING, (stats.processing_ms, stats.processed_runs))
        await self._commit(tx, "jobs", "jobs", positions, bad)

    async def write_logs(
        self, rows: Sequence[tuple[Any, ...]], positions: Mapping[int, int],
        bad: Sequence[Undecodable],
    ) -> None:
        tx = Transaction()
        tx.many(f"INSERT OR IGNORE INTO run_logs VALUES ({','.join('?' * 10)})", rows)
        await self._commit(tx, "run_logs", "logs", positions, bad)

    async def write_workers(
        self, changed: Mapping[str, WorkerState], positions: Mapping[int, int],
        bad: Sequence[Undecodable], declared: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """declared: the task types of workers that (re)started, by worker id
        (workers.declared_task_types); they replace what those workers declared before."""
        tx = Transaction()
        tx.many(f"INSERT OR REPLACE INTO workers VALUES ({','.join('?' * WORKER_COLUMNS)})",
                [worker_row(w) for w in changed.values()])
        if declared:
            tx.many("DELETE FROM worker_task_types WHERE worker_id = ?", [(w,) for w in declared])
            tx.many("INSERT INTO worker_task_types VALUES (?, ?)",
                    [(w, t) for w, types in declared.items() for t in types])
        await self._commit(tx, "workers", "workers", positions, bad)

    async def write_schedules(
        self, changed: Mapping[str, ScheduleState], positions: Mapping[int, int],
        bad: Sequence[Undecodable],
    ) -> None:
        tx = Transaction()
        tx.many(f"INSERT OR REPLACE INTO schedules VALUES ({','.join('?' * 17)})",
                [schedule_row(s) for s in changed.values()])
        await self._commit(tx, "schedules", "schedules", positions, bad)

    async def write_keys(
        self, changed: Mapping[str, KeyState], positions: Mapping[int, int],
        bad: Sequence[Undecodable], users: Mapping[str, UserState] | None = None,
    ) -> None:
        """The security topic's model: keys and users (by username) in one transaction."""
        tx = Transaction()
        tx.many(f"INSERT OR REPLACE INTO api_keys VALUES ({','.join('?' * 10)})",
                [key_row(k) for k in changed.values()])
        if users:
            tx.many(f"INSERT OR REPLACE INTO users VALUES ({','.join('?' * 11)})",
                    [user_row(u) for u in users.values()])
        await self._commit(tx, "keys", SECURITY, positions, bad)

    async def _commit(
        self, tx: Transaction, model: str, topic: str, positions: Mapping[int, int],
        bad: Sequence[Undecodable],
    ) -> None:
        """Add quarantined records and the checkpoint to tx, and run it as one transaction."""
        tx.many("INSERT OR IGNORE INTO quarantine VALUES (?, ?, ?, ?, ?, ?)",
                [(topic, b.partition, b.offset, b.key, b.error, b.value) for b in bad])
        tx.many("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?)",
                [(model, p, o) for p, o in positions.items()])
        # One hop to aiosqlite's thread for the whole transaction instead of one per
        # statement: aiosqlite runs a callable there with _execute, as its own methods do.
        await self.db._execute(tx.run, self.db)  # type: ignore[no-untyped-call]  # aiosqlite: untyped

    # -- checksums --------------------------------------------------------------------------

    async def checksums(self) -> dict[str, str]:
        """SHA-256 of every read-model table's rows in primary-key order. Not of log_source:
        it says which log they come from, and a Kafka-hosted copy of a SQLite log's read
        models is folded from the same events of another log."""
        tables = [
            name for (name,) in await fetch_all(
                self.db, "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name != 'log_source' ORDER BY name"
            )
        ]
        out = {}
        for table in tables:
            digest = hashlib.sha256()
            columns = await fetch_all(self.db, f"PRAGMA table_info({table})")
            order = ", ".join(str(i + 1) for i in range(len(columns)))
            async with self.db.execute(f"SELECT * FROM {table} ORDER BY {order}") as cursor:
                while rows := await cursor.fetchmany(_CHECKSUM_CHUNK):
                    # JSON of a chunk of rows (BLOBs as base64): one C call per chunk.
                    digest.update(_json.encode(rows))
            out[table] = digest.hexdigest()[:16]
        return out
