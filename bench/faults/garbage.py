"""R14: garbage records on every topic (Kafka mode) and every table (the embedded log).

Kafka: a record of each kind below is produced, with raw aiokafka, to every partition of
every topic jobledger reads (jobs, logs, workers, schedules, security), between jobs
enqueued through the API. Embedded: the server is stopped, rows of each kind are written
into the log's `records` table after the last offset of every topic and partition (the
table's columns allow what SQLite's type affinity lets in), and the server is started
again. Then jobs are enqueued and must finish as fast as before (stall: the extra
seconds), the API must stay healthy, and every garbage record must be quarantined.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from jobledger.schemas import JOBS, LOGS, SCHEDULES, SECURITY, WORKERS

from .common import APP, Cluster, Result, cluster, sleep_tasks, wait_for, worker_args
from .history import embedded_history

TOPICS = (JOBS, LOGS, WORKERS, SCHEDULES, SECURITY)
JOBS_AFTER = 100  # enqueued after the garbage: they must finish as fast as those before

INSERT_ROW = ("INSERT INTO records (topic, partition, offset, timestamp_ms, key, value) "
              "VALUES (?, ?, ?, ?, ?, ?)")  # no chain link: not written by a jobledger


def _envelope(event: dict[str, Any], **fields: Any) -> bytes:
    return json.dumps({"id": str(uuid.uuid4()), "key": "garbage",
                       "time": "2026-01-01T00:00:00Z",
                       "actor": {"kind": "system", "id": "faults"}, "event": event,
                       **fields}).encode()


def garbage_values() -> dict[str, bytes]:
    """What another producer, a bug or a bit flip could leave on a topic: not one of them
    is a valid jobledger event for any topic."""
    return {
        "not JSON": b"garbage \x00 not json",
        "empty": b"",
        "invalid UTF-8": b'{"id": "\xff\xfe"}',
        "JSON array": b"[1, 2, 3]",
        "JSON string": b'"a string"',
        "wrong shape": b'{"id": 1, "event": 2}',
        "unknown event": _envelope({"type": "NoSuchEvent", "job_id": "x"}),
        "newer version": _envelope({"type": "JobDue", "job_id": "x", "v": 99}),
        "bad field": _envelope({"type": "JobEnqueued", "job_id": 5, "task_type": "sleep"}),
        "nested 20,000 deep": _envelope({"type": "JobDue", "job_id": "x",
                                         "extra": json.loads("[" * 900 + "]" * 900)})
        .replace(b"[]", b"[" * 19_000 + b"]" * 19_000, 1),
        "10 MB of spaces": b" " * 10_000_000,
    }


def _timed_batch(submit: Any, finished: Any, n: int, timeout: float) -> tuple[list[str], float]:
    started = time.monotonic()
    ids = submit(sleep_tasks(n))
    wait_for(lambda: finished(ids), timeout, f"{n} jobs finished", interval=0.05)
    return ids, time.monotonic() - started


# -- Kafka ------------------------------------------------------------------------------


async def _produce(bootstrap: str, prefix: str) -> int:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False,
                                max_request_size=20_000_000)  # fmt: skip
    await producer.start()
    sent = 0
    try:
        for topic in TOPICS:
            for partition in sorted(await producer.partitions_for(f"{prefix}{topic}")):
                for kind, value in garbage_values().items():
                    key = None if sent % 3 == 0 and value else kind.encode() + b"\xff"
                    # An empty value is sent as a tombstone (a null value).
                    await producer.send_and_wait(f"{prefix}{topic}", value or None, key=key,
                                                 partition=partition)  # fmt: skip
                    sent += 1
    finally:
        await producer.stop()
    return sent


def _kafka_finished(c: Cluster) -> Any:
    def finished(ids: list[str]) -> bool:
        assert c.api is not None
        rows = c.api.rows(f"SELECT count(*) FROM jobs WHERE status = 'completed' AND job_id IN "
                          f"({','.join('?' * len(ids))})", *ids)  # fmt: skip
        return bool(rows[0][0] == len(ids))

    return finished


def kafka_garbage(workdir: Path, quick: bool) -> dict[str, Any]:
    with cluster(workdir, worker_args(8, 3.0)) as c:
        api = c.start_api()
        c.took_over(c.start_worker())
        finished = _kafka_finished(c)
        _, before = _timed_batch(c.submit, finished, JOBS_AFTER, 60)
        sent = asyncio.run(_produce(c.broker.bootstrap, c.prefix))
        try:
            _, after = _timed_batch(c.submit, finished, JOBS_AFTER, 120)
        except TimeoutError:
            after = float("inf")
        health = api.http.get("/health").json()
        count = "SELECT count(*) FROM quarantine"
        if after != float("inf"):
            wait_for(lambda: api.rows(count)[0][0] >= sent, 30, "the garbage quarantined")
        quarantined = api.rows(count)[0][0]
        for proc in c.procs:
            proc.check_running()
    return {"garbage records sent": sent, "quarantined": quarantined,
            "stall s": round(max(0.0, after - before), 2), "jobs before s": round(before, 2),
            "jobs after s": round(after, 2), "health": health.get("status"),
            "crashed": health.get("crashed", [])}


# -- embedded ---------------------------------------------------------------------------


def _table_garbage() -> list[tuple[str, Any]]:
    """Rows the records table accepts (SQLite's affinity lets other types into a column)."""
    values: list[tuple[str, Any]] = list(garbage_values().items())
    values += [("an integer value", 12345), ("a text value", "text, not a blob"),
               ("a real value", 1.5)]
    return values


def _write_garbage(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        ends = conn.execute("SELECT topic, partition, max(offset) FROM records "
                            "GROUP BY topic, partition").fetchall()  # fmt: skip
        topics = dict(conn.execute("SELECT name, partitions FROM topics").fetchall())
        known = {(t, p): o for t, p, o in ends}
        written = 0
        for topic, partitions in topics.items():
            for partition in range(partitions):
                offset = known.get((topic, partition), -1) + 1
                for kind, value in _table_garbage():
                    conn.execute(INSERT_ROW,
                                 (topic, partition, offset, int(time.time() * 1000),
                                  kind, value))
                    offset += 1
                    written += 1
    return written


def embedded_garbage(workdir: Path, quick: bool) -> dict[str, Any]:
    from tests.support.procs import ServerProcess

    db = workdir / "jl.db"
    args = ("--app", APP, "--concurrency", "8")
    env = {"PYTHONPATH": f"{Path(__file__).resolve().parents[2]}"}
    server = ServerProcess(db, *args, env=env)
    try:
        server.wait_healthy(60)
        _, before = _timed_batch(_server_submit(server), _server_finished(server),
                                 JOBS_AFTER, 60)  # fmt: skip
    finally:
        server.stop()
    written = _write_garbage(db)
    server = ServerProcess(db, *args, env=env, port=server.port)
    try:
        try:
            server.wait_healthy(60)
            _, after = _timed_batch(_server_submit(server), _server_finished(server),
                                    JOBS_AFTER, 120)  # fmt: skip
        except (TimeoutError, RuntimeError) as error:
            return {"garbage rows written": written, "stall s": None,
                    "error": f"{error!r}"[:300], "server": server.output()[-600:]}
        health = server.http.get("/health").json()
        views = db.with_name("jl.views.db")
        quarantined = _count(views, "SELECT count(*) FROM quarantine")
    finally:
        server.stop()
    return {"garbage rows written": written, "quarantined": quarantined,
            "stall s": round(max(0.0, after - before), 2), "jobs before s": round(before, 2),
            "jobs after s": round(after, 2), "health": health.get("status"),
            "crashed": health.get("crashed", []),
            "undecodable in log": embedded_history(db).undecodable}


def _count(db: Path, sql: str) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return int(conn.execute(sql).fetchone()[0])


def _server_submit(server: Any) -> Any:
    def submit(tasks: list[dict[str, Any]]) -> list[str]:
        response = server.http.post("/api/v1/tasks/batch", json={"tasks": tasks})
        if response.status_code != 201:
            raise RuntimeError(f"batch answered {response.status_code}: {response.text[:300]}")
        return list(response.json()["task_ids"])

    return submit


def _server_finished(server: Any) -> Any:
    def finished(ids: list[str]) -> bool:
        return all(server.finished(j) for j in ids[-5:]) and all(server.finished(j) for j in ids)

    return finished


def r14_garbage(workdir: Path, quick: bool) -> Result:
    (workdir / "kafka").mkdir()
    (workdir / "embedded").mkdir()
    kafka = kafka_garbage(workdir / "kafka", quick)
    embedded = embedded_garbage(workdir / "embedded", quick)
    figures = {**{f"kafka {k}": v for k, v in kafka.items()},
               **{f"embedded {k}": v for k, v in embedded.items()}}

    def fine(part: dict[str, Any], sent: str) -> bool:
        return part.get("stall s") is not None and part["stall s"] < 5 \
            and part.get("health") == "healthy" and part.get("quarantined", -1) >= part[sent]

    return Result("R14", "garbage records on every topic and table", figures,
                  ok=fine(kafka, "garbage records sent") and fine(embedded,
                                                                  "garbage rows written"))
