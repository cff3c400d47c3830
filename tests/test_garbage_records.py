"""Garbage in the embedded log's records table (fault-injection row R14): SQLite's type
affinity lets any type into the value and key columns, so a row written by another
program, or a bug, may hold an integer, a real or text where a blob belongs. Such a record
is read as bytes like any other, quarantined, and the node goes on."""

from __future__ import annotations

import sqlite3

from jobledger.schemas import JOBS, WORKERS, JobStatus
from tests.support.harness import NodeFactory, enqueue, recording_app, settle, wait_until

GARBAGE = [12345, 1.5, "text, not a blob", b"\xff\xfe not JSON"]

INSERT_ROW = ("INSERT INTO records (topic, partition, offset, timestamp_ms, key, value) "
              "VALUES (?, ?, ?, ?, ?, ?)")  # no chain link: not written by a jobledger


def _append_rows(db: object, topic: str, partition: int) -> int:
    with sqlite3.connect(str(db)) as conn:
        (last,) = conn.execute("SELECT max(offset) FROM records WHERE topic = ? AND "
                               "partition = ?", (topic, partition)).fetchone()  # fmt: skip
        offset = -1 if last is None else last
        for n, value in enumerate(GARBAGE, start=1):
            key = 7 if n % 2 else "garbage"  # a key of the wrong type too
            conn.execute(INSERT_ROW,
                         (topic, partition, offset + n, 1_767_225_600_000, key, value))
    return len(GARBAGE)


async def test_rows_of_any_type_are_quarantined_and_the_node_goes_on(
    make_node: NodeFactory,
) -> None:
    app, ran, _ = recording_app()
    node = await make_node(app)
    first = await enqueue(node, "record", "before")
    await wait_until(node, first, JobStatus.COMPLETED)
    await make_node.stop(node)
    written = sum(_append_rows(make_node.db, topic, 0) for topic in (JOBS, WORKERS))

    node = await make_node(app)  # before: the start failed (TypeError: int has no len())
    await settle(node)  # the projections catch up in the background once the start returned
    assert await node.queries.quarantined() == written
    after = await enqueue(node, "record", "after")
    await wait_until(node, after, JobStatus.COMPLETED)
    assert ran == ["before", "after"] and not node.crashed()
