"""Benchmarks of the embedded core (issue: core). Run: python bench/core.py [--quick]

Writes bench/results/core.json and bench/results/core.md. Each figure is the median of
three runs, with min and max. Targets (this 2-core machine):
  end-to-end no-op jobs in one embedded process  >= 5,000 jobs/s
  enqueue through the Python client in batches   >= 50,000 jobs/s
  replay of 1,000,000 events                     >= 100,000 events/s
  server RSS with 100,000 pending jobs           < 200 MB
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import psutil

from jobledger.projections.projector import Projected
from jobledger.schemas import (
    Actor, ActorKind, Envelope, JobEnqueued, JobPicked, JobSucceeded, encode, uuid7,
)
from jobledger.services.app import App
from jobledger.services.client import Client
from jobledger.services.dispatcher import DispatcherConfig
from jobledger.services.log import Entry
from jobledger.services.node import EmbeddedNode, NodeConfig
from jobledger.services.producer import task_request
from jobledger.services.replay import replay
from jobledger.services.sqlite_log import SQLiteLogBackend

RESULTS = Path(__file__).parent / "results"
noop_app = App()


@noop_app.job("noop")
async def noop(ctx: Any, payload: Any) -> None:
    return None


async def end_to_end(jobs: int) -> float:
    """jobs/s: enqueue (in-process, batches of 1,000), pick, run, finish, projected."""
    with tempfile.TemporaryDirectory() as tmp:
        config = NodeConfig(db=Path(tmp) / "j.db", dispatcher=DispatcherConfig(concurrency=64))
        async with EmbeddedNode(config, noop_app) as node:
            requests = [task_request("noop") for _ in range(jobs)]
            all_done = asyncio.get_running_loop().create_future()
            completed = 0

            def count(projected: Projected) -> None:
                nonlocal completed
                completed += sum(s.status == "completed" for s in projected.change.jobs.values())
                if completed >= jobs and not all_done.done():
                    all_done.set_result(None)

            node.projector.listeners.append(count)
            start = time.perf_counter()
            for i in range(0, jobs, 1000):
                await node.commands.enqueue(requests[i : i + 1000])
            await asyncio.wait_for(all_done, 600)
            return jobs / (time.perf_counter() - start)


class Server:
    """`jobledger serve` in a subprocess, for client-side figures."""

    def __init__(self, tmp: Path, *args: str):
        self.port = 18000 + int(time.time() * 1000) % 1000
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobledger.services.cli", "serve", "--db", str(tmp / "j.db"),
             "--port", str(self.port), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.ps = psutil.Process(self.proc.pid)

    async def ready(self, client: Client) -> None:
        for _ in range(400):
            try:
                await client.stats()
                return
            except Exception:
                await asyncio.sleep(0.05)
        raise TimeoutError("server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


async def client_enqueue(jobs: int) -> float:
    """jobs/s acknowledged: Client.submit_many, 1,000 per request, 4 requests in flight."""
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp), "--no-workers")
        try:
            async with Client(server.url) as client:
                await server.ready(client)
                requests = [task_request("noop") for _ in range(jobs)]
                chunks = [requests[i : i + 1000] for i in range(0, jobs, 1000)]
                start = time.perf_counter()
                queue = list(chunks)

                async def sender() -> None:
                    while queue:
                        await client.submit_many(queue.pop())

                await asyncio.gather(*(sender() for _ in range(4)))
                return jobs / (time.perf_counter() - start)
        finally:
            server.stop()


async def build_log(path: Path, events: int) -> None:
    """A log of `events` events: enqueue, pick, success per job, on 4 partitions."""
    backend = await SQLiteLogBackend.open(path, {"jobs": 4, "logs": 4, "workers": 1})
    now = datetime.now(UTC)
    api, worker = Actor(ActorKind.API, "bench"), Actor(ActorKind.WORKER, "w1")
    batch: list[Entry] = []
    for _ in range(events // 3 + 1):
        job_id = uuid7()
        for actor, event in (
            (api, JobEnqueued(job_id=job_id, task_type="noop", payload=msgspec.Raw(b'{"n":1}'))),
            (worker, JobPicked(job_id=job_id, attempt=1, worker_id="w1", lease_expires_at=now)),
            (worker, JobSucceeded(job_id=job_id, attempt=1)),
        ):
            env = Envelope(id=uuid7(), key=job_id, time=now, actor=actor, event=event)
            batch.append(Entry(job_id, encode(env)))
        if len(batch) >= 30_000:
            await backend.topic("jobs").append(batch)
            batch = []
    await backend.topic("jobs").append(batch)
    await backend.close()


async def replay_rate(log: Path, events: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        await replay(log, Path(tmp) / "rebuilt.db", show_progress=False)
        return events / (time.perf_counter() - start)


async def rss_with_pending(jobs: int) -> float:
    """MB of the server's RSS once `jobs` jobs are pending (their queue paused)."""
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp))
        try:
            async with Client(server.url) as client:
                await server.ready(client)
                await client._call("POST", "/api/v1/queues/default/pause")
                requests = [task_request("noop") for _ in range(jobs)]
                await client.submit_many(requests)
                while (await client.stats())["pending_count"] < jobs:
                    await asyncio.sleep(0.2)
                return server.ps.memory_info().rss / 2**20
        finally:
            server.stop()


def three(fn: Callable[[], Awaitable[float]], runs: int) -> dict[str, float]:
    values = [asyncio.run(fn()) for _ in range(runs)]
    return {"median": round(statistics.median(values), 1), "min": round(min(values), 1),
            "max": round(max(values), 1), "runs": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one run each")
    args = parser.parse_args()
    runs = 1 if args.quick else 3
    scale = 10 if args.quick else 1
    events = 1_000_000 // scale
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": psutil.cpu_count(),
                    "platform": platform.platform(), "memory_gb": round(psutil.virtual_memory().total / 2**30)},
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {"concurrency": 64, "partitions": 4, "synchronous": "FULL (log), NORMAL (read models)"},
    }
    results["end_to_end_jobs_per_s"] = three(lambda: end_to_end(20_000 // scale), runs)
    print("end to end", results["end_to_end_jobs_per_s"], flush=True)
    results["client_enqueue_jobs_per_s"] = three(lambda: client_enqueue(100_000 // scale), runs)
    print("client enqueue", results["client_enqueue_jobs_per_s"], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "big.db"
        asyncio.run(build_log(log, events))
        results["replay_events_per_s"] = three(lambda: replay_rate(log, events), runs)
        results["replay_events"] = events
    print("replay", results["replay_events_per_s"], flush=True)
    results["rss_mb_with_100k_pending"] = three(lambda: rss_with_pending(100_000 // scale), runs)
    print("rss", results["rss_mb_with_100k_pending"], flush=True)
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "core.json").write_text(json.dumps(results, indent=2) + "\n")
        (RESULTS / "core.md").write_text(markdown(results))
    print(markdown(results))


def markdown(r: dict[str, Any]) -> str:
    rows = [
        ("end-to-end no-op jobs, one embedded process", "jobs/s", r["end_to_end_jobs_per_s"], ">= 5,000"),
        ("enqueue via Python client, batches of 1,000", "jobs/s", r["client_enqueue_jobs_per_s"], ">= 50,000"),
        (f"replay of {r['replay_events']:,} events", "events/s", r["replay_events_per_s"], ">= 100,000"),
        ("server RSS with 100,000 pending jobs", "MB", r["rss_mb_with_100k_pending"], "< 200"),
    ]
    out = [f"Measured {r['when']} on {r['machine']['platform']}, {r['machine']['cpus']} CPUs, "
           f"Python {r['machine']['python']}.", "",
           "| figure | unit | median | min | max | target |", "|---|---|---|---|---|---|"]
    for name, unit, v, target in rows:
        out.append(f"| {name} | {unit} | {v['median']:,} | {v['min']:,} | {v['max']:,} | {target} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
