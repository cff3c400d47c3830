"""The SQL of snapshots (snapshots.py): a base is a full copy of the read-model tables an as_of
reads; a delta holds what changed since the snapshot before it in its base's chain, and an
as_of applies a base's deltas up to its own in SQL, inside the transaction it rolls back.

A base's deltas live in one file beside it, `<base>.deltas.db` (WAL: the snapshotter appends
while as_ofs read), each table of the base there once more with a leading `seq` column
(the delta's number, 1, 2, ...), and `deltas` listing the committed ones. What a delta
holds of each table (docs/architecture.md, "Point in time", says why):

- jobs: the rows whose last change is at or after the chain's previous checkpoint in their
  partition (`last_offset`, indexed by jobs_by_change): every row a batch since wrote.
- runs_ended, runs_ended_by, pending_moves (by minute, growing with time): the rows from
  the minute of the oldest event time among the jobs records since (`minute_floor`):
  a jobs event only changes the rows of its own minute.
- every other table (counts, queues, workers, schedules, keys, checkpoints; a few rows
  each): all its rows.

Rows only the retention of finished tasks deletes (jobs) are not deleted by a delta: an as_of
from a base taken before a prune still lists them, as the state then did.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Mapping
from pathlib import Path

# Tables an as_of never reads: the job_events and job_event_ids indexes (a row per event,
# as big as the jobs table), runs and run logs (GET /runs has no as_of), quarantine. A fold
# writes only the tables it reads (asof.py), and they are made, empty.
NOT_IN_SNAPSHOTS = frozenset({"job_events", "job_event_ids", "runs", "run_logs", "quarantine"})
BY_MINUTE = ("runs_ended", "runs_ended_by", "pending_moves")  # rows from a minute on
# Indexes no as_of query uses (the WebSocket resume's): left out of bases, whose applied
# rows then update one index less.
NOT_IN_BASES = frozenset({"jobs_by_change"})
CHANGED_ROWS = "jobs"  # rows changed since the chain's previous checkpoint


def copied_tables(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """(name, CREATE sql) of every table a snapshot copies, in the order of the file."""
    rows = conn.execute("SELECT name, sql FROM main.sqlite_master WHERE type = 'table'"
                        " AND sql IS NOT NULL ORDER BY rowid").fetchall()
    return [(name, sql) for name, sql in rows if name not in NOT_IN_SNAPSHOTS]


def copy_read_models(views: Path, out: Path) -> None:
    """A base: the read models' tables but NOT_IN_SNAPSHOTS copied into a new file, in one
    read transaction (every model's rows and checkpoints as of one commit), the indexes
    built after the rows. (VACUUM INTO copies every table: 2.4 times the size.)"""
    live = sqlite3.connect(views, isolation_level=None)
    try:
        schema = live.execute("SELECT type, name, sql FROM sqlite_master"
                              " WHERE sql IS NOT NULL AND type IN ('table', 'index')").fetchall()
        copy = sqlite3.connect(out, isolation_level=None)
        try:
            copy.execute("PRAGMA journal_mode=OFF")  # a .tmp file: a crash only removes it
            for kind, _name, sql in schema:
                if kind == "table":
                    copy.execute(sql)
        finally:
            copy.close()
        live.execute("ATTACH ? AS snapshot", (str(out),))
        live.execute("PRAGMA snapshot.synchronous=OFF")
        live.execute("BEGIN")
        for name, _sql in copied_tables(live):
            live.execute(f"INSERT INTO snapshot.{name} SELECT * FROM main.{name}")
        live.execute("COMMIT")
    finally:
        live.close()
    copy = sqlite3.connect(out, isolation_level=None)
    try:
        for kind, name, sql in schema:
            if kind == "index" and name not in NOT_IN_BASES:
                copy.execute(sql)
        # A rollback journal: an as_of keeps its fold's changes in memory (asof.py).
        copy.execute("PRAGMA journal_mode=DELETE")
    finally:
        copy.close()


def compact(base: Path, seq: int, out: Path) -> None:
    """A new base from a base and its deltas 1..seq: the base file copied, the deltas
    applied and committed. The state of that delta, at the cost of a file copy and the
    deltas' rows rather than of copying every row and building every index again."""
    shutil.copyfile(base, out)
    conn = sqlite3.connect(out, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=OFF")  # a .tmp file: a crash only removes it
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("ATTACH ? AS deltas", (str(deltas_path(base)),))
        conn.execute("BEGIN")
        apply_deltas(conn, seq)
        conn.execute("COMMIT")
        conn.execute("DETACH deltas")
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()


def deltas_path(base: Path) -> Path:
    """Where the deltas of a base live: 000012.db -> 000012.deltas.db."""
    return base.with_name(base.stem + ".deltas.db")


class DeltaCopy:
    """One delta being taken: a read transaction on the live read models (so every table is
    copied as of one commit) and a write transaction on the deltas file, on a connection
    used from one thread at a time (asyncio.to_thread)."""

    def __init__(self, views: Path, base: Path):
        self.conn = sqlite3.connect(views, isolation_level=None, check_same_thread=False)
        try:
            self.conn.execute("ATTACH ? AS deltas", (str(deltas_path(base)),))
            self.conn.execute("PRAGMA deltas.journal_mode=WAL")
            self.conn.execute("PRAGMA deltas.synchronous=NORMAL")
            self.conn.execute("BEGIN")
            _create_delta_tables(self.conn)
        except BaseException:
            self.close()
            raise

    def checkpoints(self) -> list[tuple[str, int, int]]:
        """The live checkpoints, read inside the transaction: what the delta will reflect."""
        return self.conn.execute("SELECT model, partition, next_offset FROM main.checkpoints"
                                 ).fetchall()

    def write(self, seq: int, since: Mapping[int, int], minute_floor: int | None) -> int:
        """Copy the delta numbered seq: jobs changed at or after `since` (partition -> next
        offset of the chain's previous snapshot), the minute tables from minute_floor (None:
        no jobs record since, so none of them changed), the rest whole. Commit; the jobs
        rows it holds."""
        conn = self.conn
        jobs = 0
        for name, _sql in copied_tables(conn):
            if name == CHANGED_ROWS:
                for partition, offset in since.items():
                    jobs += conn.execute(
                        f"INSERT INTO deltas.{name} SELECT ?, * FROM main.{name}"
                        " WHERE partition = ? AND last_offset >= ?",
                        (seq, partition, offset)).rowcount
                jobs += conn.execute(  # partitions the previous snapshot had not reached
                    f"INSERT INTO deltas.{name} SELECT ?, * FROM main.{name} WHERE partition"
                    f" NOT IN ({','.join('?' * len(since))})", (seq, *since)).rowcount
            elif name in BY_MINUTE:
                if minute_floor is not None:
                    conn.execute(f"INSERT INTO deltas.{name} SELECT ?, * FROM main.{name}"
                                 " WHERE minute >= ?", (seq, minute_floor))
            else:
                conn.execute(f"INSERT INTO deltas.{name} SELECT ?, * FROM main.{name}", (seq,))
        conn.execute("INSERT INTO deltas.deltas VALUES (?, ?, ?)", (seq, minute_floor, jobs))
        conn.execute("COMMIT")
        return jobs

    def close(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        self.conn.close()


def _create_delta_tables(conn: sqlite3.Connection) -> None:
    """The deltas file's tables, if new (inside the delta's transaction: a crash leaves none
    or all of them): each copied table with a leading seq, no constraints (a delta's rows
    are copies), an index by seq."""
    if conn.execute("SELECT 1 FROM deltas.sqlite_master WHERE name = 'deltas'").fetchone():
        return
    conn.execute("CREATE TABLE deltas.deltas (seq INTEGER PRIMARY KEY, minute_floor INTEGER,"
                 " jobs INTEGER NOT NULL)")
    for name, _sql in copied_tables(conn):
        columns = conn.execute(f"PRAGMA main.table_info({name})").fetchall()
        # The declared types: the same column affinities, so values copy back unchanged.
        defs = ", ".join(f"{column[1]} {column[2]}" for column in columns)
        conn.execute(f"CREATE TABLE deltas.{name} (seq INTEGER NOT NULL, {defs})")
        conn.execute(f"CREATE INDEX deltas.{name}_by_seq ON {name} (seq)")


def delta_checkpoints(base: Path) -> dict[int, list[tuple[str, int, int]]]:
    """The committed deltas of a base: seq -> the checkpoints it reflects."""
    path = deltas_path(base)
    if not path.exists():
        return {}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'deltas'").fetchone():
            return {}
        out: dict[int, list[tuple[str, int, int]]] = {
            seq: [] for (seq,) in conn.execute("SELECT seq FROM deltas")}
        for seq, model, partition, offset in conn.execute(
                "SELECT seq, model, partition, next_offset FROM checkpoints"):
            if seq in out:
                out[seq].append((model, partition, offset))
        return out
    finally:
        conn.close()


def delta_rows(base: Path) -> int:
    """The jobs rows of a base's deltas: what an as_of on its last one applies."""
    path = deltas_path(base)
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'deltas'").fetchone():
            return 0
        return int(conn.execute("SELECT COALESCE(SUM(jobs), 0) FROM deltas").fetchone()[0])
    finally:
        conn.close()


def apply_deltas(conn: sqlite3.Connection, seq: int) -> None:
    """Apply the deltas 1..seq of the base open as main, attached as `deltas`, inside the
    caller's transaction: the state of the base's chain at delta seq."""
    floors = conn.execute("SELECT seq, minute_floor FROM deltas.deltas WHERE seq <= ?"
                          " ORDER BY seq", (seq,)).fetchall()
    in_deltas = {name for (name,) in conn.execute(
        "SELECT name FROM deltas.sqlite_master WHERE type = 'table'")}
    for name, _sql in copied_tables(conn):
        if name not in in_deltas:  # a table newer than the deltas file: as the base has it
            continue
        columns = ", ".join(c[1] for c in conn.execute(f"PRAGMA main.table_info({name})"))
        if name == CHANGED_ROWS:
            conn.execute(f"INSERT OR REPLACE INTO main.{name} SELECT {columns}"
                         f" FROM deltas.{name} WHERE seq <= ? ORDER BY seq", (seq,))
        elif name in BY_MINUTE:
            for each, floor in floors:
                if floor is not None:
                    conn.execute(f"DELETE FROM main.{name} WHERE minute >= ?", (floor,))
                    conn.execute(f"INSERT INTO main.{name} SELECT {columns}"
                                 f" FROM deltas.{name} WHERE seq = ?", (each,))
        else:
            conn.execute(f"DELETE FROM main.{name}")
            conn.execute(f"INSERT INTO main.{name} SELECT {columns} FROM deltas.{name}"
                         " WHERE seq = ?", (seq,))
