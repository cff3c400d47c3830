"""What every workload gets: the sizes to use, a scratch directory, the shared Redis, and
the environment for the processes it starts."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent  # the repository: `bench` is importable from here


@dataclass(frozen=True)
class Sizes:
    """The size of every workload. The full sizes are the issue's; --quick divides them."""

    drain_jobs: int = 20_000
    enqueue_one_by_one: int = 2_000
    enqueue_batched: int = 20_000
    batch: int = 1_000  # jobs per batch call
    latency_seconds: float = 5.0  # of steady load per run
    http_seconds: float = 10.0
    http_clients: int = 32
    lag_seconds: float = 4.0
    replay_events: int = 1_000_000
    query_tasks: int = 1_000_000
    query_seconds: int = 5  # of each kind of request, per run (wrk takes whole seconds)
    pending_jobs: int = 100_000
    ws_subscribers: int = 1_000
    ws_http_subscribers: int = 500  # the HTTP API beside a fan-out (issue 18's probe)
    ws_http_jobs: int = 4_000  # x 500 subscribers: 2 M messages
    dashboard_jobs: int = 10_000  # the dashboard's burst: 1,000 a second
    slots: int | None = None  # worker concurrency of every system; None: each its own

    def quick(self) -> Sizes:
        return replace(
            self, drain_jobs=2_000, enqueue_one_by_one=300, enqueue_batched=4_000,
            latency_seconds=1.5, http_seconds=3.0, lag_seconds=1.5, replay_events=100_000,
            query_tasks=100_000, query_seconds=2, pending_jobs=10_000, ws_subscribers=250,
            ws_http_subscribers=100, ws_http_jobs=1_000, dashboard_jobs=3_000,
        )


@dataclass
class Env:
    sizes: Sizes
    tmp: Path
    redis: RedisServer | None = None
    cache: dict[str, Any] = field(default_factory=dict)  # fixtures built once per suite run
    _count: int = 0

    def scratch(self, name: str) -> Path:
        """A fresh directory for one run of one workload."""
        self._count += 1
        return Path(tempfile.mkdtemp(prefix=f"{self._count:03d}-{name}-", dir=self.tmp))

    @property
    def huey_db(self) -> Path:
        return self.tmp / "huey.db"

    def child_env(self) -> dict[str, str]:
        """The environment of every process the suite starts: `bench` importable, and where
        the shared Redis and Huey's file are."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        env["BENCH_HUEY_DB"] = str(self.huey_db)
        if self.redis is not None:
            env["BENCH_REDIS_URL"] = self.redis.url
        return env
