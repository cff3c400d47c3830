"""Projection lag: from an enqueue's append being acknowledged (durable in the log) to the
read model's commit that shows the job, in one process: an in-process node running the jobs
(the same slots as the server's), with jobs enqueued at a steady rate through its commands."""

from __future__ import annotations

import time
from typing import Any

from bench.env import Env
from bench.ledger import JobledgerSystem
from bench.measure import latency_ms, steady, wait_until

APPENDS_PER_S = 200  # enqueue calls a second; faster rates put more jobs in each


async def projection_lag(system: JobledgerSystem, env: Env, rate: int) -> dict[str, Any]:
    from jobledger.services.write.producer import task_request

    per_call = max(1, rate // APPENDS_PER_S)
    calls = max(1, int(rate * env.sizes.lag_seconds / per_call))
    acked: dict[str, float] = {}
    visible: dict[str, float] = {}
    async with system.mode.node(env, env.scratch(f"lag-{system.key}")) as node:

        def seen(projected: Any) -> None:
            now = time.monotonic()
            for job_id in projected.change.jobs:
                visible.setdefault(job_id, now)

        node.projector.listeners.append(seen)

        async def send(_: int) -> None:
            outcomes = await node.commands.enqueue([task_request("noop") for _ in range(per_call)])
            now = time.monotonic()
            for outcome in outcomes:
                acked[outcome.task_id] = now

        achieved = await steady(rate / per_call, calls, send) * per_call

        async def all_visible() -> bool | None:
            return acked.keys() <= visible.keys() or None

        await wait_until(all_visible, 60, "every enqueued job visible in the read model")
    lags = [visible[job] - at for job, at in acked.items()]
    early = sum(lag < 0 for lag in lags)  # shown before the enqueue call resumed: lag 0
    return {**latency_ms([max(0.0, lag) for lag in lags]),
            "details": {"jobs": len(lags), "achieved_jobs_per_s": round(achieved, 1),
                        "jobs_per_append": per_call, "visible_before_ack": early}}
