"""Rows on worker processes in Kafka mode (a test broker, `jobledger api`, `jobledger
worker`s): R1 kill -9 at random points, R3 SIGSTOP past the lease then SIGCONT, R5 SIGTERM
during long jobs, R9 workers added and killed every few seconds.

Each row's figures come from the jobs topic read from offset 0 (history.py).
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

from jobledger.schemas.jobs import JobDue, JobHeartbeat, JobLeaseExpired, JobPicked

from .common import Cluster, Result, cluster, send, sleep_tasks, wait_for, worker_args
from .history import History, percentile

LEASE_S = 3.0


def worker_ids(c: Cluster) -> dict[int, str]:
    """pid -> worker id of every worker the API's read model knows."""
    assert c.api is not None
    return {w["pid"]: w["worker_id"] for w in c.api.get("/api/v1/workers")}


def worker_id_of(c: Cluster, pid: int) -> str:
    return wait_for(lambda: worker_ids(c).get(pid), 30, f"worker {pid} in /workers")


def reclaim_seconds(history: History, kills: dict[str, float]) -> list[float]:
    """For each job a killed worker had picked and that was picked again later: seconds
    from the kill to the next pick (the pick's time is its producer's clock, this host's)."""
    out = []
    for job in history.jobs.values():
        events = [e for e in job.events if type(e.event).__name__ == "JobPicked"]
        for first, then in zip(events, events[1:], strict=False):
            killed_at = kills.get(first.event.worker_id)  # type: ignore[union-attr]
            if killed_at is not None and then.time.timestamp() >= killed_at:
                out.append(then.time.timestamp() - killed_at)
    return out


def reclaim_phases(history: History, kills: dict[str, float]) -> dict[str, list[float]]:
    """Where each re-claim's time goes, by the log's times, for each attempt a killed worker
    held that ended in JobLeaseExpired: "lease left" (kill -> the lease's end as last
    renewed), "expiry after lease" (the lease's end -> the new owner's JobLeaseExpired: the
    group's rebalances and its fold, when they outlast the lease), "retry backoff"
    (JobLeaseExpired -> JobDue) and "due -> pick" (JobDue -> the next JobPicked).
    "moved before due": how many JobDue another owner appended than the JobLeaseExpired
    (the partition changed hands in between: a rebalance delayed the due)."""
    phases: dict[str, list[float]] = {"lease left": [], "expiry after lease": [],
                                      "retry backoff": [], "due -> pick": [],
                                      "moved before due": []}
    for job in history.jobs.values():
        lease_end = killed_at = expired_at = due_at = expired_by = None
        for env in job.events:
            event, at = env.event, env.time.timestamp()
            if isinstance(event, JobPicked):
                if due_at is not None:
                    phases["due -> pick"].append(at - due_at)
                    lease_end = killed_at = expired_at = due_at = None
                killed_at = kills.get(event.worker_id)
            if isinstance(event, JobPicked | JobHeartbeat) and killed_at and at < killed_at:
                lease_end = event.lease_expires_at.timestamp()
            elif isinstance(event, JobLeaseExpired) and killed_at and lease_end:
                expired_at, expired_by = at, env.actor.id
                phases["lease left"].append(max(0.0, lease_end - killed_at))
                phases["expiry after lease"].append(at - max(lease_end, killed_at))
            elif isinstance(event, JobDue) and expired_at is not None:
                due_at = at
                phases["retry backoff"].append(at - expired_at)
                phases["moved before due"].append(float(env.actor.id != expired_by))
    return phases


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000)


def finish(c: Cluster, ids: list[str], timeout: float) -> None:
    wait_for(lambda: c.unfinished() == 0 and len(c.api.rows("SELECT job_id FROM jobs"))  # type: ignore[union-attr]
             >= len(ids), timeout, "every job finished", interval=0.5)


def r1_kill_workers(workdir: Path, quick: bool) -> Result:
    """kill -9 of a worker process at random points under 1,000 jobs."""
    jobs, kills_wanted = (200, 2) if quick else (1000, 6)
    rng = random.Random(1)
    with cluster(workdir, worker_args(8, LEASE_S)) as c:
        c.start_api()
        for _ in range(3):
            c.took_over(c.start_worker())
        ids: list[str] = []
        for _ in range(jobs // 100):
            ids += c.submit(sleep_tasks(100, 0.2))
        kills: dict[str, float] = {}
        while len(kills) < kills_wanted and c.unfinished():
            time.sleep(rng.uniform(0.5, 2.0))
            victim = rng.choice(c.live_workers())
            wid = worker_id_of(c, victim.pid)
            victim.kill()
            kills[wid] = time.time()
            c.start_worker()
        finish(c, ids, 180)
        history = c.history()
    lost = history.lost(ids) + history.unfinished(ids)
    reclaim = reclaim_seconds(history, kills)
    phases = reclaim_phases(history, kills)
    moved = [int(x) for x in phases.pop("moved before due")]
    figures = {"jobs": jobs, "kills": len(kills), "lost": len(lost),
               "re-claim p50 ms": _ms(percentile(reclaim, 50)),
               "re-claim p99 ms": _ms(percentile(reclaim, 99)), "re-claimed jobs": len(reclaim),
               "redundant runs": history.redundant_runs(ids), "lease s": LEASE_S,
               "re-claim phases p50 ms": {name: _ms(percentile(values, 50))
                                          for name, values in phases.items()},
               "dues appended by another owner than the expiry":
                   f"{sum(moved)} of {len(moved)}"}
    return Result("R1", "kill -9 of a worker at random points (Kafka mode)", figures,
                  ok=not lost)


def r3_stop_past_lease(workdir: Path, quick: bool) -> Result:
    """SIGSTOP a worker past its lease, then SIGCONT: what it reports late is stale."""
    jobs = 16 if quick else 64
    with cluster(workdir, worker_args(8, LEASE_S, grace=10)) as c:
        c.start_api()
        frozen = c.start_worker()
        c.took_over(frozen)  # alone in the group: every partition is its own
        ids = c.submit(sleep_tasks(jobs, 2 * LEASE_S))
        wait_for(lambda: c.api.rows("SELECT count(*) FROM jobs WHERE status = 'in_progress'")  # type: ignore[union-attr]
                 [0][0] >= 8, 30, "the frozen worker running jobs")
        other = c.start_worker()
        c.took_over(other)
        send(frozen, signal.SIGSTOP)
        stopped_at = time.monotonic()
        wait_for(lambda: time.monotonic() - stopped_at > 3 * LEASE_S, 30, "three leases")
        send(frozen, signal.SIGCONT)  # its attempts finish now, long after their leases
        finish(c, ids, 180)
        time.sleep(LEASE_S)  # the resumed worker's late outcomes reach the log
        history = c.history()
        shown = c.api.rows("SELECT count(*) FROM runs WHERE status = 'COMPLETED'")[0][0]  # type: ignore[union-attr]
    written, applied = history.stale_outcomes()
    completed = sum(1 for j in ids if (s := history.state(j)) and s.status == "completed")
    figures = {"jobs": jobs, "stale outcomes written": written,
               "stale outcomes applied": applied, "completed": completed,
               "runs shown completed": shown, "lease s": LEASE_S,
               "lost": len(history.unfinished(ids))}
    return Result("R3", "SIGSTOP a worker past its lease, then SIGCONT", figures,
                  ok=applied == 0 and completed == jobs and shown == jobs)


def r5_sigterm_long_jobs(workdir: Path, quick: bool) -> Result:
    """SIGTERM during 10 s jobs: how long the worker takes to stop, and whether the jobs
    it was running wait a full lease before another worker takes them."""
    job_s, lease, grace = (10.0, 8.0, 1.0) if quick else (10.0, 15.0, 2.0)
    with cluster(workdir, worker_args(4, lease, grace)) as c:
        c.start_api()
        stopping = c.start_worker()
        c.took_over(stopping)
        ids = c.submit(sleep_tasks(4, job_s))
        wait_for(lambda: c.api.rows("SELECT count(*) FROM jobs WHERE status = 'in_progress'")  # type: ignore[union-attr]
                 [0][0] == 4, 30, "4 jobs running")
        other = c.start_worker()
        c.took_over(other)
        time.sleep(0.5)
        termed_at, t0 = time.time(), time.monotonic()
        send(stopping, signal.SIGTERM)
        stopping.proc.wait(60)
        drain = time.monotonic() - t0
        finish(c, ids, 120)
        history = c.history()
    waits = []
    for j in ids:
        picks = history.jobs[j].pick_times()
        if len(picks) > 1:
            waits.append(picks[1].timestamp() - termed_at)
    waited_lease = sum(1 for w in waits if w >= lease - 1)
    figures = {"jobs running at SIGTERM": len(ids), "job s": job_s, "grace s": grace,
               "lease s": lease, "drain s": round(drain, 2),
               "re-picked": len(waits), "re-pick after SIGTERM s (max)":
               round(max(waits), 2) if waits else None,
               "jobs left waiting a full lease": waited_lease,
               "lost": len(history.unfinished(ids))}
    return Result("R5", "SIGTERM during 10 s jobs", figures,
                  ok=waited_lease == 0 and drain < grace + 10 and not history.unfinished(ids))


def r9_churn(workdir: Path, quick: bool) -> Result:
    """Add and kill workers every 5 s for 2 minutes, under a steady stream of jobs."""
    period, total = (2.0, 12.0) if quick else (5.0, 120.0)
    rng = random.Random(9)
    with cluster(workdir, worker_args(8, LEASE_S)) as c:
        c.start_api()
        c.took_over(c.start_worker())
        ids: list[str] = []
        kills = 0
        started = time.monotonic()
        while time.monotonic() - started < total:
            ids += c.submit(sleep_tasks(50, 0.05))
            c.start_worker()
            time.sleep(period / 2)
            live = c.live_workers()
            if len(live) > 1:
                rng.choice(live).kill()
                kills += 1
            time.sleep(period / 2)
        if not c.live_workers():
            c.start_worker()
        finish(c, ids, 240)
        history = c.history()
    lost = history.lost(ids) + history.unfinished(ids)
    redundant = history.redundant_runs(ids)
    figures = {"jobs": len(ids), "seconds": total, "kills": kills, "lost": len(lost),
               "redundant runs": redundant,
               "redundant runs per 1,000": round(1000 * redundant / max(1, len(ids)), 1)}
    return Result("R9", "add and kill workers every 5 s", figures, ok=not lost)

