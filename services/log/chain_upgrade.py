"""The SQLite log's chain columns: reading the heads, and chaining a log written before the
chain (docs/audit.md, "Logs from before the chain").

A log file from before the chain is upgraded the first time this version opens it for
writing (`jobledger serve`, `import`, `upgrade-chain`): its records are chained in offset
order, in one transaction, and the meta table notes when and up to which offsets. Those
links prove that the records have not changed since the upgrade, not before it.
"""

from __future__ import annotations

import json
import sqlite3
import time

from jobledger.services.log.chain import Chainer

UPGRADED = "chain_upgraded"  # meta key: {"time_ms": ..., "ends": {"jobs/0": n, ...}}
CHAINED = "chained"  # meta key: every record of the file has its link
BATCH = 10_000


def chain_heads(conn: sqlite3.Connection) -> dict[tuple[str, int], bytes]:
    """The link of the last record of every partition that has records."""
    heads: dict[tuple[str, int], bytes] = {}
    for topic, count in conn.execute("SELECT name, partitions FROM topics").fetchall():
        for part in range(count):
            row = conn.execute(
                "SELECT chain FROM records WHERE topic = ? AND partition = ?"
                " ORDER BY offset DESC LIMIT 1", (topic, part)).fetchone()
            if row is not None and row[0] is not None:
                heads[(topic, part)] = row[0]
    return heads


def upgrade_chain(conn: sqlite3.Connection) -> dict[str, int]:
    """Chain every record that has no link yet (a log from before the chain), once; return
    how many records each partition had chained this way ({} when there was nothing to do).
    conn: the write connection, outside a transaction."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(records)")}
    if "chain" not in columns:
        conn.execute("ALTER TABLE records ADD COLUMN chain BLOB")
    elif conn.execute("SELECT 1 FROM meta WHERE key = ?", (CHAINED,)).fetchone():
        return {}
    conn.execute("BEGIN IMMEDIATE")
    try:
        ends = _chain_all(conn)
        if ends:
            note = {"time_ms": int(time.time() * 1000), "ends": ends}
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (UPGRADED, json.dumps(note)))
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, '1')", (CHAINED,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return ends


def _chain_all(conn: sqlite3.Connection) -> dict[str, int]:
    chainer = Chainer({})
    ends: dict[str, int] = {}
    for topic, count in conn.execute("SELECT name, partitions FROM topics").fetchall():
        for part in range(count):
            end = _chain_partition(conn, chainer, topic, part)
            if end:
                ends[f"{topic}/{part}"] = end
                conn.execute("INSERT OR REPLACE INTO chain_heads VALUES (?, ?, ?, ?)",
                             (topic, part, end, chainer.heads[(topic, part)]))
    return ends


def _chain_partition(conn: sqlite3.Connection, chainer: Chainer, topic: str, part: int) -> int:
    """Chain one partition's records in offset order; the offset after the last one."""
    offset, end = -1, 0
    while True:
        rows = conn.execute(
            "SELECT offset, key, value FROM records WHERE topic = ? AND partition = ?"
            " AND offset > ? ORDER BY offset LIMIT ?", (topic, part, offset, BATCH)).fetchall()
        if not rows:
            return end
        links = [(chainer.next(topic, part, o, k, v), topic, part, o) for o, k, v in rows]
        conn.executemany("UPDATE records SET chain = ? WHERE topic = ? AND partition = ?"
                         " AND offset = ?", links)
        offset = rows[-1][0]
        end = offset + 1
