"""R26: a nemesis soak in Kafka mode. Two API nodes and three workers on a test broker run
a steady stream of jobs while, every 10-30 s (scaled down with --quick), a nemesis picks a
random process and a random fault: kill -9 (then a fresh process), SIGSTOP for a few
seconds then SIGCONT, or a graceful restart (SIGTERM, then a fresh process). At the end the
nemesis stops, everything finishes, and the log is checked.

Anomalies by type (from the log): acknowledged jobs the log lacks (lost), jobs not
finished (final pending), jobs completed twice, stale outcomes the reducer applied; RSS:
each API node's resident memory sampled through the soak, first and last third compared.
Duration: --soak-seconds (default 600; 60 with --quick).
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import psutil

from jobledger.schemas.jobs import JobSucceeded

from .common import Cluster, Result, cluster, send, sleep_tasks, wait_for, worker_args

API_NODES = 2
WORKERS = 3


def soak_seconds(quick: bool) -> float:
    return float(os.environ.get("JOBLEDGER_FAULTS_SOAK_SECONDS") or (60 if quick else 600))


def _restart(c: Cluster, victim: Any) -> Any:
    if victim in c.workers:
        c.workers.remove(victim)
        return c.start_worker()
    fresh = c.start_api(f"api{len(c.procs)}")
    return fresh


def _restart_exited(c: Cluster, apis: list[Any], exited: list[str]) -> None:
    """Processes that ended without the nemesis (a crash: those it killed were replaced at
    once) are noted with their exit status and started again, as a supervisor would."""
    for n, api in enumerate(apis):
        if api.proc.poll() is not None:
            exited.append(f"{api.name} (status {api.proc.returncode})")
            apis[n] = c.start_api(f"api{len(c.procs)}")
    for worker in [w for w in c.workers if w.proc.poll() is not None]:
        exited.append(f"{worker.name} (status {worker.proc.returncode})")
        c.workers.remove(worker)
        c.start_worker()


def r26_soak(workdir: Path, quick: bool) -> Result:
    seconds = soak_seconds(quick)
    gap = (3.0, 8.0) if quick else (10.0, 30.0)
    rng = random.Random(26)
    faults: dict[str, int] = {"kill -9": 0, "stop/continue": 0, "restart": 0}
    rss: dict[int, list[float]] = {}
    broker_rss: list[float] = []
    exited: list[str] = []
    with cluster(workdir, worker_args(8, 3.0)) as c:
        broker = psutil.Process(c.broker.process.pid)
        apis = [c.start_api(f"api{n}") for n in range(API_NODES)]
        for _ in range(WORKERS):
            c.took_over(c.start_worker())
        ids: list[str] = []
        started = time.monotonic()
        next_fault = started + rng.uniform(*gap)
        while time.monotonic() - started < seconds:
            _restart_exited(c, apis, exited)
            api = rng.choice([a for a in apis if a.proc.poll() is None])
            c.api = api
            try:
                ids += c.submit(sleep_tasks(20, 0.05))
            except Exception:  # noqa: BLE001 - an API node mid-fault: the next one takes it
                pass
            for a in apis:
                if a.proc.poll() is None:
                    rss.setdefault(a.pid, []).append(psutil.Process(a.pid).memory_info().rss)
            broker_rss.append(broker.memory_info().rss)
            if time.monotonic() >= next_fault:
                victim = rng.choice([p for p in [*apis, *c.workers] if p.proc.poll() is None])
                kind = rng.choice(list(faults))
                faults[kind] += 1
                if kind == "stop/continue":
                    send(victim, signal.SIGSTOP)
                    time.sleep(rng.uniform(1, 5))
                    send(victim, signal.SIGCONT)
                else:
                    victim.kill() if kind == "kill -9" else victim.stop()
                    fresh = _restart(c, victim)
                    if victim in apis:
                        apis[apis.index(victim)] = fresh
                next_fault = time.monotonic() + rng.uniform(*gap)
            time.sleep(0.5)
        c.api = next(a for a in apis if a.proc.poll() is None)
        try:
            wait_for(lambda: c.unfinished() == 0, 300, "every job finished", interval=1)
            shown_unfinished, health = 0, None
        except TimeoutError:  # the log says whether the jobs or this node's read model stuck
            shown_unfinished, health = c.unfinished(), c.api.health()
        history = c.history()
        broker_cpu = sum(broker.cpu_times()[:2])
    completed_twice = sum(
        1 for j in ids
        if sum(isinstance(e.event, JobSucceeded) for e in history.jobs[j].events) > 1
        and history.redundant_runs([j]))
    _, stale_applied = history.stale_outcomes()
    growth = _rss_growth(rss)
    anomalies = {"lost": len(history.lost(ids)), "final pending": len(history.unfinished(ids)),
                 "completed twice": completed_twice, "stale outcomes applied": stale_applied,
                 "unfinished in an API node's read model 300 s after": shown_unfinished,
                 "processes that exited on their own": len(exited)}
    figures = {"seconds": seconds, "jobs": len(ids), "faults": faults, "anomalies": anomalies,
               "final pending": anomalies["final pending"],
               "redundant runs": history.redundant_runs(ids),
               "API RSS MB first third -> last third": growth,
               "test broker RSS MB first third -> last third":
                   _rss_growth({c.broker.process.pid: broker_rss}).popitem()[1],
               "test broker CPU s": round(broker_cpu),
               "jobs topic records": sum(len(job.events) for job in history.jobs.values())}
    if exited:
        figures["exited on their own"] = exited
    if health is not None:
        figures["that API node's /health"] = health
    return Result("R26", "nemesis soak in Kafka mode (kill, stop/continue, restart)", figures,
                  ok=not any(anomalies.values()))


def _rss_growth(rss: dict[int, list[float]]) -> dict[str, str]:
    """Per API process that lived through the soak: median RSS of its first and last third."""
    out = {}
    for pid, samples in rss.items():
        if len(samples) >= 6:
            third = len(samples) // 3
            first, last = statistics.median(samples[:third]), statistics.median(samples[-third:])
            out[str(pid)] = f"{first / 2**20:.0f} -> {last / 2**20:.0f}"
    return out
