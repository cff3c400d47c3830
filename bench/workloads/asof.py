"""as_of latency (issue 22): a log of `asof_events` events (every job enqueued, picked and
succeeded, so a random moment finds some pending), read models and their snapshots built
by a node catching up on it (one snapshot every `--snapshot-every-events`), then, at
random times between the first and the last record, GET /api/v1/stats?as_of,
GET /api/v1/tasks?as_of&status=pending&limit=100, and one task's as_of. Timed in process
through the node's History, the code behind those endpoints (the HTTP hop adds what the
query workload measures, about 1 ms).

Run alone: python -m bench.workloads.asof EVENTS [SNAPSHOT_EVERY] (prints the figures)."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SAMPLES = 100  # random moments of each kind
CHUNK = 3_000  # events appended at a time, the projections caught up after each
SNAPSHOT_EVERY = 2_000  # the serve default


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


async def measure(events: int, snapshot_every: int, where: Path) -> dict[str, Any]:
    """Build the log through a running node (no workers), a chunk at a time with the
    projections caught up after each, so its snapshots are taken as a live server takes
    them; then time as_of queries at random moments."""
    from jobledger.schemas import JOBS
    from jobledger.schemas.common import iso_ms
    from jobledger.services.handlers.app import App
    from jobledger.services.history.snapshots import snapshots_dir
    from jobledger.services.node.embedded import EmbeddedNode, NodeConfig

    config = NodeConfig(db=where / "log.db", run_workers=False, run_scheduler=False,
                        snapshot_every_events=snapshot_every)
    start = time.monotonic()
    async with EmbeddedNode(config, App()) as node:
        sample = await _append_live(node, events)
        built_s = time.monotonic() - start
        log = node.backend.topic(JOBS)
        ends = await log.end_offsets()
        first = min([(await log.read(p, 0, 1))[0].timestamp_ms for p in ends])
        last = max([(await log.read(p, end - 1, 1))[0].timestamp_ms for p, end in ends.items()])
        rng = random.Random(22)
        times: dict[str, list[float]] = {"stats": [], "pending": [], "task": []}
        for _ in range(SAMPLES):
            as_of = iso_ms(rng.randint(first, last)) or ""
            for kind in ("stats", "pending"):
                began = time.perf_counter()
                moment = await node.history.moment(as_of)
                async with node.history.at(moment) as then:
                    if kind == "stats":
                        await then.stats(moment.time_ms)
                    else:
                        await then.jobs(status="pending", limit=100)  # type: ignore[arg-type]
                times[kind].append(1000 * (time.perf_counter() - began))
            task_id = rng.choice(sample)
            began = time.perf_counter()
            moment = await node.history.moment(as_of, (JOBS, log.partition_for(task_id)))
            await node.history.task(task_id, moment)
            times["task"].append(1000 * (time.perf_counter() - began))
        snapshots = node.history.snapshots.taken if node.history.snapshots else []
        directory = snapshots_dir(where / "log.views.db")
        size = sum(f.stat().st_size for f in directory.iterdir())  # bases, deltas, their WAL
    return {"stats_p50_ms": _p(times["stats"], 0.5), "stats_p99_ms": _p(times["stats"], 0.99),
            "pending_p50_ms": _p(times["pending"], 0.5),
            "pending_p99_ms": _p(times["pending"], 0.99),
            "task_p50_ms": _p(times["task"], 0.5), "task_p99_ms": _p(times["task"], 0.99),
            "details": {"events": events, "snapshot_every": snapshot_every,
                        "snapshots": len(snapshots),
                        "bases": len({s.base.number for s in snapshots}),
                        "snapshot_mb": round(size / 2**20, 1),
                        "build_s": round(built_s, 1), "load_average": os.getloadavg()}}


async def _append_live(node: Any, events: int) -> list[str]:
    """Append `events` events (jobs enqueued, picked, succeeded) in chunks of CHUNK, each
    once the projections applied the one before; a sample of the job ids."""
    from jobledger.schemas import JOBS
    from jobledger.services.log.protocol import Entry

    from .logs import _job_batches

    sample: list[str] = []
    async for batch in _job_batches(-(-events // 3), 1, sample):
        for i in range(0, len(batch), CHUNK):
            await node.backend.topic(JOBS).append([Entry(k, v) for k, v in batch[i:i + CHUNK]])
            await node.caught_up(600)
    return sample


async def asof(system: Any, env: Any) -> dict[str, Any]:
    from bench.system import NotMeasured

    if system.mode.key != "embedded":
        raise NotMeasured("n/a: snapshots are built by the embedded node only")
    return await measure(env.sizes.replay_events, SNAPSHOT_EVERY, env.scratch("asof"))


if __name__ == "__main__":
    print(asyncio.run(measure(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2
                              else SNAPSHOT_EVERY, Path(tempfile.mkdtemp(prefix="asof-")))))
