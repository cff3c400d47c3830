"""Celery 5 with a Redis broker. One worker process: `celery worker --pool threads` with
`concurrency` threads; no result backend (a no-op's result is of no use), json serializer."""

from __future__ import annotations

import os
import sys
from typing import Any

from celery import Celery, group

from bench.env import Env
from bench.recorder import job_started

from . import Peer, PeerSession

QUEUE = "bench"

app = Celery("bench", broker=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_serializer="json", accept_content=["json"], task_ignore_result=True,
    task_default_queue=QUEUE, broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="noop")
def noop(payload: Any) -> None:
    job_started(payload)


class CelerySession(PeerSession):
    batch_api = "group(...).apply_async(): one call, one message per job"

    async def submit_one(self, payload: dict[str, Any]) -> None:
        noop.delay(payload)

    async def submit_batch(self, payloads: list[dict[str, Any]]) -> None:
        group(noop.s(p) for p in payloads).apply_async()

    async def preload(self, payloads: list[dict[str, Any]], batch: int) -> None:
        with app.producer_or_acquire() as producer:  # faster than group() or delay()
            for payload in payloads:
                noop.apply_async((payload,), producer=producer)


class CeleryPeer(Peer):
    key = "celery"
    label = "Celery + Redis"
    modules = ("celery", "redis")
    packages = ("celery", "kombu", "redis", "hiredis")
    best_concurrency = 8
    pool = "threads"  # one process; `solo` drained about as fast, but runs one job at a time

    def settings(self) -> dict[str, Any]:
        return {
            "worker": f"celery worker --pool {self.pool} --concurrency {self.concurrency}"
                      " (one process)",
            "options": "no result backend, json, prefetch multiplier 4 (default), "
                       "acks early (default), --without-gossip/mingle/heartbeat",
            "broker": "Redis, no persistence (--save '' --appendonly no)",
        }

    def worker_argv(self) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "bench.peers.celery:app", "worker",
                "--pool", self.pool, "--concurrency", str(self.concurrency), "--queues", QUEUE,
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                "--loglevel", "WARNING"]

    def open(self, env: Env) -> PeerSession:
        return CelerySession(env, self)


PEER = CeleryPeer()
