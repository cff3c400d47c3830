"""Workloads every system runs with the same code: enqueue throughput, drain throughput and
enqueue->start latency. They use only the Session interface (bench/system.py)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bench.env import Env
from bench.measure import latency_ms, no_gc_pauses, steady
from bench.recorder import job_payload, read_recorded
from bench.system import System

DRAIN_TIMEOUT = 600.0


async def _rate(jobs: int, calls: Sequence[Callable[[], Awaitable[None]]]) -> float:
    start = time.monotonic()
    for call in calls:
        await call()
    return jobs / (time.monotonic() - start)


async def enqueue(system: System, env: Env) -> dict[str, Any]:
    """Jobs/s accepted by the system's own client, one call at a time, no worker running:
    one job a call, then `batch` jobs a call where the system has a batch API."""
    sizes = env.sizes
    out: dict[str, Any] = {}
    async with system.session(env, workers=False) as session:
        payload = job_payload(env.tmp / "never-run.json", 1)
        one = sizes.enqueue_one_by_one
        out["one_by_one"] = await _rate(one, [lambda: session.submit_one(payload)] * one)
        if session.batch_api is not None:
            many = sizes.enqueue_batched
            chunk = [payload] * sizes.batch
            calls = [lambda: session.submit_batch(chunk)] * (many // sizes.batch)
            out["batched"] = await _rate(many // sizes.batch * sizes.batch, calls)
        out["details"] = {"batch_api": session.batch_api}
    return out


async def drain(system: System, env: Env) -> dict[str, Any]:
    """N no-op jobs already enqueued; one worker process starts (or its queue resumes);
    jobs/s until all are done. Done: completed in the system's own records where it keeps
    them (jobledger's read model), else the last job's start in its handler."""
    jobs = env.sizes.drain_jobs
    out = env.scratch(f"drain-{system.key}") / "started.json"
    async with system.session(env, workers=True) as session:
        await session.preload([job_payload(out, jobs)] * jobs, env.sizes.batch)
        await session.settled(jobs)
        start = time.monotonic()
        await session.start_worker()
        recorded = await read_recorded(out, DRAIN_TIMEOUT, session.check_running)
        done = await session.completed_at(jobs, DRAIN_TIMEOUT)
        peak = {name: mb for s in session.services for name, mb in s.peak_rss_mb().items()}
        broker = env.redis.service.rss_mb() if env.redis is not None else None
    handler_rate = jobs / (recorded.last_start - recorded.first_start)
    rate = jobs / (done - start) if done is not None else handler_rate
    return {
        "jobs_per_s": rate,
        "peak_rss_mb": max(peak.values()),
        "details": {
            "done_when": ("completed in the read model" if done is not None
                          else "last handler start"),
            "handler_clock_jobs_per_s": round(handler_rate, 1),
            "first_start_after_s": round(recorded.first_start - start, 3),
            "peak_rss_mb_by_process": peak,
            "redis_rss_mb_after": round(broker, 1) if broker is not None else None,
        },
    }


async def latency(system: System, env: Env, rate: int, batch: int = 1) -> dict[str, Any]:
    """The worker idles; jobs are sent at a steady `rate` (open loop, `batch` a call), each
    stamped with time.monotonic() when handed to the client; latency = handler start -
    stamp, p50 and p99 in ms."""
    calls = max(1, int(rate * env.sizes.latency_seconds / batch))
    jobs = calls * batch
    where = env.scratch(f"latency{rate}-{system.key}")
    async with system.session(env, workers=True) as session:
        await session.start_worker()
        warm = where / "warm.json"
        await session.submit_one(job_payload(warm, 1))
        await read_recorded(warm, 120, session.check_running)
        out = where / "started.json"

        async def send(_: int) -> None:
            payload = job_payload(out, jobs, time.monotonic())
            if batch == 1:
                await session.submit_one(payload)
            else:
                await session.submit_batch([payload] * batch)

        with no_gc_pauses():
            achieved = await steady(rate / batch, calls, send) * batch
        recorded = await read_recorded(out, 120 + env.sizes.latency_seconds, session.check_running)
    return {**latency_ms(recorded.start_latencies()),
            "details": {"jobs": jobs, "jobs_per_call": batch,
                        "achieved_jobs_per_s": round(achieved, 1)}}
