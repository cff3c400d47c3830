"""R13: poison jobs at about 1 % of a run in Kafka mode: a handler that raises, one that
calls os.abort() (its worker process dies with it, every attempt), and a sync handler whose
memory blows up (MemoryError under an address-space cap, bench/faults/app.py). Dead worker
processes are started again, as a supervisor (systemd, Kubernetes) would.

Time to dead letter: from a poison job's JobEnqueued to its last JobFailed or
JobLeaseExpired (retries used up), by the log's times. Throughput drop: the good jobs'
rate (first enqueue to the last good job's end, by the log) against a run of the same jobs
without poison, on the same cluster size.
"""

from __future__ import annotations

import time
from pathlib import Path

from jobledger.schemas.jobs import JobEnqueued

from .common import Cluster, Result, cluster, sleep_tasks, worker_args
from .history import History, percentile

KINDS = ("raise", "abort", "blowup")
WORKERS = 2


def _run(workdir: Path, jobs: int, poison: int) -> tuple[float, History, list[str], int]:
    with cluster(workdir, worker_args(8, 3.0)) as c:
        c.start_api()
        for _ in range(WORKERS):
            c.took_over(c.start_worker())
        tasks = sleep_tasks(jobs - poison, 0.05)
        for n in range(poison):
            tasks.insert((n + 1) * len(tasks) // (poison + 1),
                         {"task_type": "poison", "payload": {"how": KINDS[n % len(KINDS)]}})
        ids = []
        for start in range(0, len(tasks), 100):
            ids += c.submit(tasks[start:start + 100])
        restarts = _supervise(c, lambda: c.unfinished() == 0, 300)
        history = c.history()
        return _good_seconds(history, ids), history, ids, restarts


def _good_seconds(history: History, ids: list[str]) -> float:
    """From the first JobEnqueued to the last good job's end, by the log's times."""
    first = min(history.jobs[j].events[0].time for j in ids)
    good = [history.jobs[j] for j in ids
            if getattr(history.jobs[j].events[0].event, "task_type", "") == "sleep"]
    return max((job.events[-1].time - first).total_seconds() for job in good)


def _supervise(c: Cluster, done: object, timeout: float) -> int:
    """Start a worker for each that died, until done() (polled)."""
    restarts = 0
    deadline = time.monotonic() + timeout
    while not done():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs unfinished after {timeout} s")
        for worker in c.workers:
            if worker.proc.poll() is not None and not getattr(worker, "replaced", False):
                worker.replaced = True  # type: ignore[attr-defined]
                c.start_worker()
                restarts += 1
        time.sleep(0.2)
    return restarts


def r13_poison(workdir: Path, quick: bool) -> Result:
    jobs, poison = (300, 3) if quick else (1000, 10)
    (workdir / "clean").mkdir()
    (workdir / "poisoned").mkdir()
    clean_s, _, _, _ = _run(workdir / "clean", jobs - poison, 0)
    poisoned_s, history, ids, restarts = _run(workdir / "poisoned", jobs, poison)
    to_dead: dict[str, list[float]] = {k: [] for k in KINDS}
    wrong_end = abort_picks = 0
    for job_id in ids:
        job = history.jobs[job_id]
        enqueued = next(e for e in job.events if isinstance(e.event, JobEnqueued))
        if enqueued.event.task_type != "poison":
            continue
        final = job.final()
        wrong_end += final is None or str(final.status) != "dead_letter"
        how = enqueued.event.payload  # raw JSON
        kind = next(k for k in KINDS if k.encode() in bytes(how))
        to_dead[kind].append((job.events[-1].time - enqueued.time).total_seconds())
        if kind == "abort":
            abort_picks += len(job.picks())
    good = jobs - poison
    figures = {"jobs": jobs, "poison": poison, "poison not dead-lettered": wrong_end,
               **{f"time to dead letter s ({k}, max)": round(max(v), 1) if v else None
                  for k, v in to_dead.items()},
               "worker restarts (abort)": restarts,
               "abort attempts in the log": abort_picks,
               "good jobs/s clean": round(good / clean_s, 1),
               "good jobs/s poisoned": round(good / poisoned_s, 1),
               "throughput drop %": round(100 * (1 - clean_s / poisoned_s), 1),
               "lost": len(history.unfinished(ids)),
               "p50 time to dead letter s": round(percentile(
                   [x for v in to_dead.values() for x in v], 50) or 0, 1)}
    return Result("R13", "poison jobs (exception, os.abort(), memory blow-up) at 1 %",
                  figures, ok=wrong_end == 0 and not history.unfinished(ids))
