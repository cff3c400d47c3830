"""arq (asyncio, Redis). One worker process, `arq bench.peers.arq.WorkerSettings`, with
max_jobs from BENCH_ARQ_MAX_JOBS; arq's defaults otherwise (poll_delay 0.5 s, results
kept 1 h)."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, ClassVar

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

from bench.env import Env
from bench.recorder import job_started

from . import Peer, PeerSession

PRELOAD_IN_FLIGHT = 100  # enqueues at once when filling the queue before a drain
REDIS = RedisSettings.from_dsn(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))


async def noop(ctx: dict[str, Any], payload: Any) -> None:
    job_started(payload)


class WorkerSettings:
    functions: ClassVar[list[Any]] = [noop]
    redis_settings = REDIS
    max_jobs = int(os.environ.get("BENCH_ARQ_MAX_JOBS", "64"))


class ArqSession(PeerSession):
    pool: ArqRedis | None = None

    async def submit_one(self, payload: dict[str, Any]) -> None:
        if self.pool is None:
            self.pool = await create_pool(REDIS)
        await self.pool.enqueue_job("noop", payload)

    async def preload(self, payloads: list[dict[str, Any]], batch: int) -> None:
        for i in range(0, len(payloads), PRELOAD_IN_FLIGHT):
            await asyncio.gather(*(self.submit_one(p) for p in payloads[i : i + PRELOAD_IN_FLIGHT]))

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.aclose()


class ArqPeer(Peer):
    key = "arq"
    label = "arq (Redis)"
    modules = ("arq",)
    packages = ("arq", "redis", "hiredis")
    best_concurrency = 64

    def settings(self) -> dict[str, Any]:
        return {
            "worker": f"arq WorkerSettings, max_jobs={self.concurrency} (one process)",
            "options": "defaults: poll_delay 0.5 s, keep_result 3600 s",
            "batch": "no batch enqueue API",
        }

    def worker_argv(self) -> list[str]:
        return [sys.executable, "-m", "arq", "bench.peers.arq.WorkerSettings"]

    def worker_env(self) -> dict[str, str]:
        return {"BENCH_ARQ_MAX_JOBS": str(self.concurrency)}

    def open(self, env: Env) -> PeerSession:
        return ArqSession(env, self)


PEER = ArqPeer()
