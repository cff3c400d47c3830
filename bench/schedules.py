"""Benchmark of the scheduler (issue: schedules). Run: python bench/schedules.py [--quick]

10,000 active schedules with one-minute intervals in one embedded node (real clock, a
no-op handler, 64 worker slots) must fire on time: p99 lateness under 1 s. Lateness of a
fire is read from the log afterwards, by the log's own append timestamps:

- enqueued: the JobEnqueued of the fire is durable (the job exists, pending);
- recorded: the ScheduleFired is durable (appended only after the JobEnqueued);
- started: the job's JobPicked is durable (a worker slot runs it), for information.

Two layouts, two rounds each: `spread` (fire times spread evenly over the minute, ~167
fires/s, what 10,000 schedules defined at different times look like) and `herd` (all
10,000 due at the same instant, as 10,000 "* * * * *" crons are: the worst case).
Writes bench/results/schedules.json and bench/results/schedules.md (not with --quick).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

from jobledger.projections.schedules import schedule_of_key
from jobledger.schemas import JOBS, SCHEDULES, ScheduleDefined, decode
from jobledger.schemas.common import to_ms
from jobledger.schemas.schedules import IntervalTrigger, ScheduleDefinition
from jobledger.services.handlers.app import App
from jobledger.services.node.embedded import EmbeddedNode, NodeConfig
from jobledger.services.runtime.dispatcher import DispatcherConfig

RESULTS = Path(__file__).parent / "results"
LEAD_SECONDS = 10  # from the end of defining to the first fire
noop_app = App()


@noop_app.job("noop")
async def noop(ctx: Any, payload: Any) -> None:
    return None


async def define(node: EmbeddedNode, count: int, first: datetime, spread: bool) -> None:
    """Append the ScheduleDefined events in batches, as many API calls would."""
    step = 60 / count if spread else 0
    for start in range(0, count, 1000):
        envs = [
            node.publisher.envelope(ScheduleDefined(
                schedule_id=f"s{i:05d}",
                definition=ScheduleDefinition(
                    name=f"s{i:05d}", task_type="noop",
                    trigger=IntervalTrigger(
                        minutes=1, start_date=first + timedelta(seconds=i * step)),
                ),
            ), f"s{i:05d}")
            for i in range(start, min(count, start + 1000))
        ]
        await node.publisher.append_now(SCHEDULES, envs)


def percentile(values: list[int], p: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0


def summary(lateness_ms: list[int]) -> dict[str, Any]:
    return {"count": len(lateness_ms), "p50_ms": percentile(lateness_ms, 50),
            "p99_ms": percentile(lateness_ms, 99), "max_ms": max(lateness_ms, default=0)}


async def lateness(node: EmbeddedNode, cutoff_ms: int) -> dict[str, Any]:
    """Lateness of every fire due before cutoff_ms, from the log's append timestamps."""
    fire_of_job: dict[str, int] = {}
    enqueued: dict[str, int] = {}
    recorded: list[int] = []
    skipped = 0
    schedules = node.backend.topic(SCHEDULES)
    for partition, end in (await schedules.end_offsets()).items():
        for offset in range(0, end, 20_000):
            for rec in await schedules.read(partition, offset, limit=20_000):
                env = decode(rec.value)
                if env.type == "ScheduleFired":
                    fire_ms = to_ms(env.event.fire_time)  # type: ignore[union-attr]
                    if fire_ms >= cutoff_ms:
                        continue  # a round beyond the ones measured
                    fire_of_job[env.event.job_id] = fire_ms  # type: ignore[union-attr]
                    recorded.append(rec.timestamp_ms - fire_ms)
                elif env.type == "ScheduleSkipped":
                    skipped += env.event.count  # type: ignore[union-attr]
    started: list[int] = []
    jobs = node.backend.topic(JOBS)
    for partition, end in (await jobs.end_offsets()).items():
        for offset in range(0, end, 20_000):
            for rec in await jobs.read(partition, offset, limit=20_000):
                if rec.key not in fire_of_job:
                    continue
                env = decode(rec.value)
                if env.type == "JobEnqueued" and schedule_of_key(env.event.idempotency_key):  # type: ignore[union-attr]
                    enqueued.setdefault(rec.key, rec.timestamp_ms - fire_of_job[rec.key])
                elif env.type == "JobPicked":
                    started.append(rec.timestamp_ms - fire_of_job[rec.key])
    return {"fires": len(recorded), "skipped": skipped,
            "enqueued": summary(list(enqueued.values())), "recorded": summary(recorded),
            "started": summary(started)}


async def run(count: int, rounds: int, spread: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        config = NodeConfig(db=Path(tmp) / "j.db", dispatcher=DispatcherConfig(concurrency=64))
        async with EmbeddedNode(config, noop_app) as node:
            began = time.perf_counter()
            first = node.clock.now() + timedelta(seconds=LEAD_SECONDS + count / 2000)
            await define(node, count, first, spread)
            defined_in = time.perf_counter() - began
            process = psutil.Process()
            cpu_before = process.cpu_times()
            cutoff = first + timedelta(minutes=rounds)  # rounds 0 .. rounds-1 are measured
            last_fire = cutoff if spread else cutoff - timedelta(minutes=1)
            await asyncio.sleep((last_fire - node.clock.now()).total_seconds() + 3)
            cpu = process.cpu_times()
            busy = (cpu.user - cpu_before.user) + (cpu.system - cpu_before.system)
            window = (last_fire - first).total_seconds() + 3
            rss = process.memory_info().rss / 2**20
            await node.scheduler.quiet()  # type: ignore[union-attr]
        # Read the log once the node has stopped (everything it appended is durable).
        async with EmbeddedNode(NodeConfig(db=config.db, run_workers=False, run_scheduler=False),
                                App()) as reader:
            found = await lateness(reader, to_ms(cutoff))
    found.update(schedules=count, rounds=rounds, expected_fires=count * rounds,
                 define_seconds=round(defined_in, 2),
                 cpu_percent_of_one_core=round(100 * busy / window), rss_mb=round(rss))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 schedules, one round each")
    parser.add_argument("--layouts", default="spread,herd", help="spread, herd or both (default)")
    args = parser.parse_args()
    count, rounds = (1000, 1) if args.quick else (10_000, 2)
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": psutil.cpu_count(),
                    "platform": platform.platform()},
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {"interval_seconds": 60, "concurrency": 64, "misfire_policy": "coalesce",
                     "max_instances": 1},
    }
    for layout in args.layouts.split(","):
        results[layout] = asyncio.run(run(count, rounds, spread=layout == "spread"))
        print(layout, json.dumps(results[layout]), flush=True)
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "schedules.json").write_text(json.dumps(results, indent=2) + "\n")
        (RESULTS / "schedules.md").write_text(markdown(results))
    print(markdown(results))


def markdown(r: dict[str, Any]) -> str:
    out = [f"Measured {r['when']} on {r['machine']['platform']}, {r['machine']['cpus']} CPUs, "
           f"Python {r['machine']['python']}. Command: `python bench/schedules.py`.", "",
           "Lateness = the log's append time of the event minus the fire time. Target: p99 "
           "under 1,000 ms for `enqueued` (the fire's job is durably on the log: the schedule "
           "has fired). `recorded` adds the ScheduleFired that follows it; `started` adds "
           "picking the job into one of 64 worker slots.", "",
           "| layout | schedules x rounds | fires | skipped | lateness | p50 ms | p99 ms | max ms "
           "| CPU % of a core | RSS MB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for layout in ("spread", "herd"):
        if layout not in r:
            continue
        v = r[layout]
        for i, kind in enumerate(("enqueued", "recorded", "started")):
            head = (f"| {layout} | {v['schedules']:,} x {v['rounds']} | {v['fires']:,}"
                    f" | {v['skipped']} " if i == 0 else "| | | | ")
            tail = f"| {v['cpu_percent_of_one_core']} | {v['rss_mb']} |" if i == 0 else "| | |"
            s = v[kind]
            out.append(f"{head}| {kind} | {s['p50_ms']:,} | {s['p99_ms']:,}"
                       f" | {s['max_ms']:,} {tail}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
