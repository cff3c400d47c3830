"""Rows on the embedded server (`jobledger serve`, one process holding the log, the read
models, the dispatcher and the worker slots): R17 cancel racing completion, R19 kill -9 in
the middle of commits, R23 read models rebuilt and killed halfway.

Figures come from the log file (history.py) and SQLite's own checks.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from jobledger.schemas.jobs import JobCancelled, JobSucceeded
from jobledger.services.replay.rebuild import checksums
from tests.support.procs import ServerProcess

from .common import APP, ROOT, Result, sleep_tasks, wait_for
from .history import embedded_history

ARGS = ("--app", APP, "--concurrency", "8")
ENV = {"PYTHONPATH": str(ROOT)}


@contextmanager
def server(db: Path, *args: str, port: int | None = None) -> Iterator[ServerProcess]:
    proc = ServerProcess(db, *ARGS, *args, env=ENV, port=port)
    try:
        proc.wait_healthy(90)
        yield proc
    finally:
        proc.stop()


def integrity(db: Path) -> str:
    """PRAGMA integrity_check's verdict. SQLite 3.40.x reports "NULL value in T.C" for
    every row of a WITHOUT ROWID table whose NOT NULL column C is declared before its
    primary key's last column (a false positive, fixed in 3.41; it shows on a fresh file
    that was never killed): such a report counts only if a query finds a NULL there."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        rows = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
        real = [r for r in rows if r != "ok" and not _false_null(conn, r)]
    return "ok" if not real else "; ".join(sorted(set(real))[:3])


def _false_null(conn: sqlite3.Connection, report: str) -> bool:
    if not report.startswith("NULL value in "):
        return False
    table, column = report.removeprefix("NULL value in ").split(".", 1)
    (nulls,) = conn.execute(f'SELECT count(*) FROM "{table}" WHERE "{column}" IS NULL').fetchone()
    return bool(nulls == 0)


def submit(proc: ServerProcess, tasks: list[dict[str, Any]]) -> list[str]:
    response = proc.http.post("/api/v1/tasks/batch", json={"tasks": tasks})
    if response.status_code != 201:
        raise RuntimeError(f"batch answered {response.status_code}: {response.text[:300]}")
    return list(response.json()["task_ids"])


def drained(proc: ServerProcess, timeout: float) -> None:
    views = proc_views(proc)

    def done() -> bool:
        with sqlite3.connect(f"file:{views}?mode=ro", uri=True, timeout=30) as conn:
            (n,) = conn.execute("SELECT count(*) FROM jobs WHERE status IN "
                                "('scheduled', 'pending', 'in_progress')").fetchone()  # fmt: skip
        return bool(n == 0)

    wait_for(done, timeout, "every job finished", interval=0.2)


def proc_views(proc: ServerProcess) -> Path:
    return Path(proc.proc.args[proc.proc.args.index("--db") + 1]).with_suffix(".views.db")  # type: ignore[union-attr]


# -- R19 ----------------------------------------------------------------------------------


class Sender:
    """Threads enqueueing one task per request as fast as the server answers; the ids it
    acknowledged (201) are kept, whatever happens to the server after."""

    def __init__(self, url: str, threads: int = 4):
        self.url = url
        self.acked: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as http:
            while not self._stop.is_set():
                try:
                    response = http.post("/api/v1/tasks", json=sleep_tasks(1)[0])
                except httpx.HTTPError:
                    continue
                if response.status_code == 201:
                    self.acked.append(response.json()["task_id"])

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)


def r19_kill_server(workdir: Path, quick: bool) -> Result:
    """kill -9 of the embedded server in the middle of commits, again and again."""
    kills = 5 if quick else 200
    rng = random.Random(19)
    db = workdir / "jl.db"
    acked: list[str] = []
    bad: list[str] = []
    port = None
    for _ in range(kills):
        proc = ServerProcess(db, *ARGS, env=ENV, port=port)
        port = proc.port
        proc.wait_healthy(90)
        sender = Sender(proc.url)
        time.sleep(rng.uniform(0.2, 1.0))
        proc.kill()  # SIGKILL while requests are being committed
        sender.stop()
        acked += sender.acked
        for file in (db, db.with_suffix(".views.db")):
            if (verdict := integrity(file)) != "ok":
                bad.append(f"{file.name}: {verdict}")
    with server(db, port=port) as proc:
        drained(proc, 120)
    history = embedded_history(db)
    lost = history.lost(acked)
    figures = {"kills": kills, "acknowledged": len(acked), "acknowledged lost": len(lost),
               "integrity_check": "ok" if not bad else "; ".join(bad[:3]),
               "unfinished after restart": len(history.unfinished(acked))}
    return Result("R19", "kill -9 of the embedded server in the middle of commits", figures,
                  ok=not lost and not bad and not figures["unfinished after restart"])


# -- R17 ----------------------------------------------------------------------------------


def r17_cancel_races_completion(workdir: Path, quick: bool) -> Result:
    """A cancel sent as the job completes, many times: exactly one end each, and the read
    model shows the end the log decided."""
    jobs = 100 if quick else 1000
    rng = random.Random(17)
    db = workdir / "jl.db"
    answers: dict[str, int] = {}
    with server(db) as proc:
        delays = [(rng.uniform(0.05, 0.15), rng.uniform(-0.1, 0.02)) for _ in range(jobs)]

        def race(delay: tuple[float, float]) -> tuple[str, int]:
            """A job of `runs` seconds, and its cancel sent about as it ends."""
            runs, jitter = delay
            with httpx.Client(base_url=proc.url, timeout=10) as http:
                job_id = http.post("/api/v1/tasks", json=sleep_tasks(1, runs)[0]).json()["task_id"]
                time.sleep(max(0.0, runs + jitter))
                return job_id, http.post(f"/api/v1/tasks/{job_id}/cancel").status_code

        with ThreadPoolExecutor(8) as pool:
            answers.update(pool.map(race, delays))
        ids = list(answers)
        drained(proc, 120)
        time.sleep(0.5)
        shown = {j: (proc.task(j) or {}).get("status") for j in ids}
    history = embedded_history(db)
    winners_wrong = lost_updates = 0
    ends = {"completed": 0, "cancelled": 0}
    for j in ids:
        job = history.jobs[j]
        applied_ends = _applied_ends(job)
        winners_wrong += applied_ends != 1
        final = job.final()
        status = str(final.status) if final else None
        lost_updates += shown[j] != status
        if status in ends:
            ends[status] += 1
    refused_but_cancelled = sum(1 for j, code in answers.items()
                                if code == 409 and shown[j] == "cancelled")
    figures = {"jobs": jobs, "jobs without exactly one end": winners_wrong,
               "lost updates (read model differs from the log)": lost_updates,
               "completed": ends["completed"], "cancelled": ends["cancelled"],
               "answers": {str(k): sum(1 for v in answers.values() if v == k)
                           for k in sorted(set(answers.values()))},
               "409 yet cancelled": refused_but_cancelled}
    return Result("R17", "concurrent cancel against completion of one job", figures,
                  ok=winners_wrong == 0 and lost_updates == 0 and not refused_but_cancelled)


def _applied_ends(job: Any) -> int:
    from jobledger.projections.jobs import reduce_job
    from jobledger.schemas.lifecycle import TERMINAL

    state, ends = None, 0
    for env in job.events:
        after = reduce_job(state, env)
        if isinstance(env.event, JobSucceeded | JobCancelled) and after is not state \
                and after is not None and after.status in TERMINAL:
            ends += 1
        state = after
    return ends


# -- R23 ----------------------------------------------------------------------------------


def _checkpointed(views: Path) -> int:
    try:
        with sqlite3.connect(f"file:{views}?mode=ro", uri=True, timeout=5) as conn:
            (n,) = conn.execute("SELECT coalesce(sum(next_offset), 0) FROM checkpoints "
                                "WHERE model = 'jobs'").fetchone()  # fmt: skip
            return int(n)
    except sqlite3.Error:
        return 0


def r23_rebuild_killed(workdir: Path, quick: bool) -> Result:
    """Read models dropped and rebuilt at start, the server killed halfway, started again:
    the read models must equal those built in one go."""
    jobs = 5_000 if quick else 50_000
    db = workdir / "jl.db"
    views = db.with_suffix(".views.db")
    with server(db) as proc:
        for _ in range(jobs // 1000):
            submit(proc, sleep_tasks(1000))
        drained(proc, 600)
    before = asyncio.run(checksums(views))
    total = _checkpointed(views)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{views}{suffix}").unlink(missing_ok=True)
    proc = ServerProcess(db, *ARGS, "--no-workers", env=ENV)
    try:
        halfway = wait_for(lambda: _checkpointed(views) >= total // 2 or proc.proc.poll(),
                           300, "the rebuild halfway", interval=0.01)
        at_kill = _checkpointed(views)
        proc.kill()
    finally:
        proc.stop()
    del halfway
    with server(db, "--no-workers"):
        pass
    after = asyncio.run(checksums(views))
    differ = sorted(k for k in before if before[k] != after.get(k))
    figures = {"jobs": jobs, "records of jobs": total, "applied at the kill": at_kill,
               "checksums equal": not differ, "differing": differ}
    return Result("R23", "read models dropped and rebuilt, kill -9 halfway, resumed", figures,
                  ok=not differ and 0 < at_kill < total)
