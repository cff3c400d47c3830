"""A recorded history replayed through today's projections.

tests/golden/history_v1.jsonl is a log written by hand, one wire envelope per line, in log
order: a job retried into dead_letter (with a late heartbeat of a superseded attempt), a
completed job with progress and logs (and a duplicate enqueue), a scheduled job cancelled
by request, a permanently failed job requeued to success, a running job cancelled (and its
late success), and a worker reporting with the v1 WorkerHeartbeat (memory_bytes).
The jobs, runs and job_counts rows are the point; run_logs, workers (the upcast memory_mb),
worker_task_types (added later: a new table, the older rows unchanged), runs_ended and
processing come along because a change there is just as much a change.

tests/golden/history_v2.jsonl (added with causal ids, docs/events.md) holds a job enqueued
by a request, failed once and retried to success, every event citing its cause; a child
job its first attempt enqueued; a job from another producer with no ids (its own id
becomes its correlation id); and a queue pause (not indexed by id). Its jobs rows'
correlation_id and cause_id, and job_event_ids, are the point. When it was added,
history_v1's jobs rows gained those two columns (and nothing else changed): its jobs get
their JobEnqueued's id as correlation id, as any job enqueued without one.

tests/golden/history_v3.jsonl (added with the trace column, docs/observability.md) holds a
job enqueued with a traceparent and a tracestate, one enqueued with no trace, and one
enqueued with a trace (not sampled), failed for good and requeued with another trace. Its
jobs rows' trace (traceparent, a newline, tracestate) is the point; the rows of the older
histories gained that column as null.

tests/golden/security_v1.jsonl (added with the security topic) holds API keys: a key made
at first start, one made by it with permissions listed twice and an expiry, a second
KeyCreated under that id trying to rewrite its digest and permissions (ignored), its
revocation (and a second one, ignored), the revocation of a key that never existed, and a
JOBLEDGER_ADMIN_KEY registered with its derived id. Its api_keys rows are the point.

tests/golden/users_v1.jsonl (added with users) holds users: one registered with
permissions listed twice, a second registration of the active name (ignored), a change of
its permissions, a change naming another registration (ignored), its removal by itself,
a change after it (ignored), the name registered again as another user, a user
registered anonymously (open registration), and the removal of a name never registered.
Its users rows are the point.

The records are appended byte for byte as recorded, so old versions reach the decoder as
they would from a real log. The rows that come out are compared with
history_v1.expected.json, whose values were checked by hand.

A difference is either a bug or a deliberate change of the read models. Never just
regenerate the expected file to make this pass: a deliberate change is a versioned
migration — keep this history and its expectation, record a new history_v2 pair beside it,
and say in the commit why old logs now project differently. To write a new expectation
after such a decision: `python -m tests.test_golden_history history_vN`, then check it by
hand.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from jobledger.projections.store import ReadModelStore
from jobledger.schemas import decode, topic_of
from jobledger.services.log.protocol import Entry
from jobledger.services.runtime.projector import Projector
from tests.support.builders import open_log

GOLDEN = Path(__file__).parent / "golden"
# The tables compared, each in primary-key order.
TABLES: dict[str, str] = {
    "jobs": "job_id",
    "runs": "run_id",
    "job_counts": "task_type, status",
    "run_logs": "log_id",
    "workers": "worker_id",
    "worker_task_types": "worker_id, task_type",
    "runs_ended": "minute, outcome",
    "processing": "id",
    "job_events": "job_id, offset",
}
SECURITY_TABLES = {"api_keys": "key_id"}
USERS_TABLES = {"users": "username"}
CAUSAL_TABLES = {"jobs": "job_id", "job_events": "job_id, offset",
                 "job_event_ids": "event_id"}
TRACE_TABLES = {"jobs": "job_id"}
# Columns added after a history was recorded, with the value every old row projects to.
# An old expectation does not list them; a column added without a line here fails.
ADDED_COLUMNS: dict[str, dict[str, Any]] = {
    "workers": {"partitions": "[]",  # WorkerHeartbeat.partitions: none before it existed
                "started_event_id": "018f3264-6a40-7000-8000-000000000001"},  # v1's one start
    "jobs": {"trace": None},  # the enqueue's trace context: these histories carry none
}
# Each history and the tables its expectation holds.
HISTORIES = {"history_v1": TABLES, "history_v2": CAUSAL_TABLES, "history_v3": TRACE_TABLES,
             "security_v1": SECURITY_TABLES, "users_v1": USERS_TABLES}


def _plain(value: Any) -> Any:
    """JSON-friendly: BLOB columns hold JSON text (payloads, results, details, job lists)."""
    return value.decode() if isinstance(value, bytes) else value


async def project(history: Path, tmp: Path,
                  tables: dict[str, str] = TABLES) -> dict[str, list[dict[str, Any]]]:
    """Append the history to a fresh log, catch a fresh store up, and dump the tables."""
    backend = await open_log(tmp / "log.db")
    store = await ReadModelStore.open(tmp / "views.db")
    try:
        for line in history.read_bytes().splitlines():
            env = decode(line)  # only to route it; the log gets the recorded bytes
            await backend.topic(topic_of(env.event)).append([Entry(env.key, line)])
        projector = Projector(backend, store)
        await projector.catch_up()
        assert projector.quarantined == 0
        out: dict[str, list[dict[str, Any]]] = {}
        for table, order in tables.items():
            async with store.db.execute(f"SELECT * FROM {table} ORDER BY {order}") as cursor:
                names = [d[0] for d in cursor.description]
                out[table] = [
                    {n: _plain(v) for n, v in zip(names, row, strict=True)}
                    async for row in cursor
                ]
        return out
    finally:
        await store.close()
        await backend.close()


@pytest.mark.parametrize("name", sorted(HISTORIES))
async def test_a_history_projects_to_the_recorded_rows(name: str, tmp_path: Path) -> None:
    tables = HISTORIES[name]
    expected = json.loads((GOLDEN / f"{name}.expected.json").read_text())
    actual = await project(GOLDEN / f"{name}.jsonl", tmp_path, tables)
    assert set(expected) == set(tables)
    for table in tables:
        recorded = set(expected[table][0]) if expected[table] else set()
        # Only the columns added after this history was recorded (its expectation lacks them).
        added = {k: v for k, v in ADDED_COLUMNS.get(table, {}).items() if k not in recorded}
        rows = [{k: v for k, v in row.items() if k in recorded or k not in added}
                for row in actual[table]]
        assert rows == expected[table], f"{name}: {table} differs from the golden rows"
        for row in actual[table]:
            assert {k: row[k] for k in added} == added, f"{name}: {table}'s added columns"


def _write_expected(name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rows = asyncio.run(project(GOLDEN / f"{name}.jsonl", Path(tmp), HISTORIES[name]))
    target = GOLDEN / f"{name}.expected.json"
    target.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {target}: check every value by hand before committing")


if __name__ == "__main__":
    _write_expected(sys.argv[1])
