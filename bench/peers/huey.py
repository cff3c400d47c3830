"""Huey with its SQLite storage (SqliteHuey, one file). One consumer process with
`concurrency` worker threads; Huey's default polling (0.1 s, backing off to 10 s when idle)."""

from __future__ import annotations

import os
import sys
from typing import Any

from huey import SqliteHuey

from bench.env import Env
from bench.recorder import job_started

from . import Peer, PeerSession

huey = SqliteHuey("bench", filename=os.environ.get("BENCH_HUEY_DB", "bench-huey.db"))


@huey.task(name="noop")
def noop(payload: Any) -> None:
    job_started(payload)


class HueySession(PeerSession):
    async def submit_one(self, payload: dict[str, Any]) -> None:
        noop(payload)


class HueyPeer(Peer):
    key = "huey"
    label = "Huey + SQLite"
    modules = ("huey",)
    packages = ("huey",)
    best_concurrency = 1
    needs_redis = False

    def settings(self) -> dict[str, Any]:
        return {
            "worker": f"huey_consumer --workers {self.concurrency} --worker-type thread"
                      " (one process)",
            "options": "SqliteHuey defaults: WAL, fsync off; polling -d 0.1 -b 1.15 -m 10",
            "batch": "no batch enqueue API",
        }

    def worker_argv(self) -> list[str]:
        return [sys.executable, "-m", "huey.bin.huey_consumer", "bench.peers.huey.huey",
                "--workers", str(self.concurrency), "--worker-type", "thread", "--quiet"]

    def reset(self, env: Env) -> None:
        huey.flush()

    def open(self, env: Env) -> PeerSession:
        return HueySession(env, self)


PEER = HueyPeer()
