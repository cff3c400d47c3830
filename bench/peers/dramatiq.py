"""Dramatiq with its Redis broker. One worker process (`dramatiq --processes 1`, which a
supervisor process starts) with `concurrency` threads; default middleware."""

from __future__ import annotations

import os
import sys
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.env import Env
from bench.recorder import job_started

from . import Peer, PeerSession

QUEUE = "bench"

broker = RedisBroker(url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="noop", queue_name=QUEUE)
def noop(payload: Any) -> None:
    job_started(payload)


class DramatiqSession(PeerSession):
    async def submit_one(self, payload: dict[str, Any]) -> None:
        noop.send(payload)


class DramatiqPeer(Peer):
    key = "dramatiq"
    label = "Dramatiq + Redis"
    modules = ("dramatiq", "redis")
    packages = ("dramatiq", "redis", "hiredis")
    best_concurrency = 64

    def settings(self) -> dict[str, Any]:
        return {
            "worker": f"dramatiq --processes 1 --threads {self.concurrency} (a supervisor and one "
                      "worker process)",
            "options": "default middleware; Redis broker",
            "batch": "no batch enqueue API (group() sends one message per job)",
        }

    def worker_argv(self) -> list[str]:
        return [sys.executable, "-m", "dramatiq", "bench.peers.dramatiq", "--processes", "1",
                "--threads", str(self.concurrency), "--queues", QUEUE]

    def open(self, env: Env) -> PeerSession:
        return DramatiqSession(env, self)


PEER = DramatiqPeer()
