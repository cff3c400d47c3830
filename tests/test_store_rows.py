"""Transaction.rows (projections/store.py) writes rows as multi-row INSERTs with NULLs in
the SQL: the table must come out as executemany of the same rows would leave it."""

from __future__ import annotations

import random
import sqlite3

from jobledger.projections.store import Transaction

TABLE = "CREATE TABLE t (k TEXT PRIMARY KEY, a INTEGER, b TEXT, c BLOB, d REAL) WITHOUT ROWID"


def _rows(n: int) -> list[tuple[object, ...]]:
    pick = random.Random(7)
    return [
        (f"k{i:05d}", pick.choice([None, i]), pick.choice([None, "x" * (i % 5)]),
         pick.choice([None, bytearray(b"{}"), b"raw"]), pick.choice([None, i / 3]))
        for i in range(n)
    ]


def _table(fill) -> list[tuple[object, ...]]:  # type: ignore[no-untyped-def]
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute(TABLE)
    fill(conn)
    return conn.execute("SELECT k, a, b, c, d, typeof(c) FROM t ORDER BY k").fetchall()


def test_rows_with_nulls_match_executemany() -> None:
    rows = _rows(3_000)  # every pattern of NULLs, each more than 64 rows long
    tx = Transaction()
    tx.rows("INSERT OR REPLACE INTO t", rows)
    expected = _table(lambda c: c.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)",
                                              [tuple(bytes(v) if isinstance(v, bytearray) else v
                                                     for v in r) for r in rows]))
    assert _table(lambda c: tx.run(_Db(c))) == expected


def test_rows_without_nulls_keep_every_row() -> None:
    rows = [(f"k{i:05d}", i, "b", b"c", 0.5) for i in range(130)]  # two full statements + 2
    tx = Transaction()
    tx.rows("INSERT INTO t", rows, nulls=False)
    assert len(_table(lambda c: tx.run(_Db(c)))) == 130


class _Db:
    """What Transaction.run takes from an aiosqlite connection: its sqlite3 connection."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn
