"""Server memory with N jobs pending: queue `default` paused, N jobs enqueued through the
Python client in batches, RSS read once the read model shows them all pending."""

from __future__ import annotations

import time
from typing import Any

from bench.env import Env
from bench.ledger import JobledgerSession, JobledgerSystem
from bench.recorder import job_payload


async def rss_pending(system: JobledgerSystem, env: Env) -> dict[str, Any]:
    jobs = env.sizes.pending_jobs
    async with system.session(env, workers=True) as session:
        assert isinstance(session, JobledgerSession)
        start = time.monotonic()
        await session.preload([job_payload(env.tmp / "never-run.json", 1)] * jobs, env.sizes.batch)
        acked = time.monotonic() - start
        await session.settled(jobs)
        rss = sum(s.rss_mb() for s in session.services)
        peak = {name: mb for s in session.services for name, mb in s.peak_rss_mb().items()}
    return {"rss_mb": rss, "details": {"jobs": jobs, "peak_rss_mb_by_process": peak,
                                       "enqueue_jobs_per_s": round(jobs / acked, 1)}}
