"""Crash recovery with real processes killed by SIGKILL."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from tests.support.procs import ServerProcess, poll

pytestmark = pytest.mark.slow


def test_job_of_a_killed_worker_is_retried_after_its_lease_expires(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    server = ServerProcess(db, "--app", "recovery_app:app", "--lease-seconds", "2")
    try:
        server.wait_healthy()
        hung = server.http.post("/api/v1/tasks", json={"task_type": "hang_first_attempt"}).json()
        others = [
            server.http.post("/api/v1/tasks", json={"task_type": "noop"}).json()["task_id"]
            for _ in range(20)
        ]
        poll(lambda: (server.task(hung["task_id"]) or {}).get("status") == "in_progress", 15)
    finally:
        server.kill()  # the worker slot dies mid-job, holding its lease

    restarted = ServerProcess(db, "--app", "recovery_app:app", "--lease-seconds", "2")
    try:
        restarted.wait_healthy()
        task = poll(lambda: restarted.finished(hung["task_id"]), 30)
        assert task["status"] == "completed"
        assert task["attempt"] == 2 and task["result"] == {"attempt": 2}
        runs = _runs_of(tmp_path, hung["task_id"])
        assert [(a, s) for a, s, _ in runs] == [(1, "FAILED"), (2, "COMPLETED")]
        assert "LeaseExpired" in runs[0][2]
        for task_id in others:  # no job lost
            assert poll(lambda t=task_id: restarted.finished(t), 30)["status"] == "completed"
    finally:
        restarted.stop()


def _runs_of(tmp_path: Path, task_id: str) -> list[tuple[int, str, str]]:
    import sqlite3

    with sqlite3.connect(tmp_path / "j.views.db") as conn:
        return conn.execute(
            "SELECT attempt, status, coalesce(error, '') FROM runs"
            " WHERE job_id = ? ORDER BY attempt",
            (task_id,),
        ).fetchall()


def test_every_acknowledged_enqueue_survives_a_server_kill(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    # A short lease: jobs running at the kill are retried soon after the restart.
    server = ServerProcess(db, "--app", "recovery_app:app", "--lease-seconds", "2")
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def producer() -> None:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            for _ in range(5000):  # bounded: the kill normally ends it far sooner
                if stop.is_set():
                    return
                try:
                    response = client.post("/api/v1/tasks/batch",
                                           json={"tasks": [{"task_type": "noop"}] * 10})
                except httpx.HTTPError:
                    return  # the server died: this request's outcome is unknown, not acked
                if response.status_code == 201:
                    with lock:
                        acked.extend(response.json()["task_ids"])

    try:
        server.wait_healthy()
        threads = [threading.Thread(target=producer) for _ in range(4)]
        for t in threads:
            t.start()
        poll(lambda: len(acked) >= 2000, 30, interval=0.01)
        server.kill()  # mid-burst
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        server.kill()

    with lock:
        acknowledged = list(acked)
    restarted = ServerProcess(db, "--app", "recovery_app:app", "--lease-seconds", "2")
    try:
        restarted.wait_healthy()

        def all_completed() -> bool:
            stats = restarted.http.get("/api/v1/stats").json()
            counts = ("pending_count", "in_progress_count", "scheduled_count")
            return sum(stats[count] for count in counts) == 0

        poll(all_completed, 60, interval=0.2)
        missing = [t for t in acknowledged
                   if (restarted.task(t) or {}).get("status") != "completed"]
        assert not missing, (
            f"{len(missing)} of {len(acknowledged)} acknowledged tasks lost or unfinished")
    finally:
        restarted.stop()


def test_workers_of_a_killed_server_show_as_lost_after_restart(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    server = ServerProcess(db, "--app", "recovery_app:app")
    try:
        server.wait_healthy()
        [before] = server.http.get("/api/v1/workers").json()
    finally:
        server.kill()
    restarted = ServerProcess(db, "--app", "recovery_app:app")
    try:
        restarted.wait_healthy()

        def statuses() -> dict[str, str] | None:
            workers = restarted.http.get("/api/v1/workers").json()
            rows = {w["worker_id"]: w["status"] for w in workers}
            return rows if len(rows) == 2 and rows[before["worker_id"]] == "lost" else None

        rows = poll(statuses, 10)
        assert sorted(rows.values()) == ["alive", "lost"]
        assert restarted.http.get("/api/v1/stats").json()["worker_count"] == 1
    finally:
        restarted.stop()
