"""The peers: the job queues users would pick instead of jobledger, each in
bench/peers/<name>.py behind the interface of bench/system.py.

Each module holds both sides of its peer: the worker-side app whose no-op job calls
bench.recorder.job_started (its worker process imports the module), and `PEER`, the
adapter the workloads drive. A module reads where Redis and Huey's file are from the
environment (BENCH_REDIS_URL, BENCH_HUEY_DB) when it is imported, so the suite imports
them (load_peers) only once those are set.

Worker concurrency: each peer runs with the setting that drained fastest in a sweep over
1, 4, 8, 16 and 64 on this machine (docs/performance.md); --slots sets one for all.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from bench.env import ROOT, Env
from bench.procs import Service
from bench.redis_server import RedisServer
from bench.system import Session, System, missing_packages, package_versions

# module name under bench/peers, the label, the modules it imports
PEERS = {
    "celery": ("Celery + Redis", ("celery", "redis")),
    "huey": ("Huey + SQLite", ("huey",)),
    "arq": ("arq (Redis)", ("arq",)),
    "dramatiq": ("Dramatiq + Redis", ("dramatiq", "redis")),
}


class PeerSession(Session):
    """A peer's client in the benchmark process, and its one worker process once started."""

    def __init__(self, env: Env, peer: Peer):
        super().__init__()
        self.env = env
        self.peer = peer

    async def start_worker(self) -> None:
        logs = self.env.scratch(self.peer.key)
        self.services.append(
            Service(f"{self.peer.key}-worker", self.peer.worker_argv(), logs,
                    {**self.env.child_env(), **self.peer.worker_env()}, cwd=ROOT)
        )

    async def close(self) -> None:
        """Release the client (connections, pools)."""


class Peer(System):
    """A peer with a worker process of its own; subclasses say how to start it and how
    their client enqueues."""

    modules: Sequence[str] = ()
    packages: Sequence[str] = ()
    needs_redis = True
    best_concurrency = 64  # the fastest drain of the sweep; see the module docstring
    concurrency = 64  # what this run uses (load_peers sets it)

    def unavailable(self) -> str | None:
        redis_missing = RedisServer.missing() if self.needs_redis else None
        return missing_packages(*self.modules) or redis_missing

    def versions(self) -> dict[str, str]:
        return package_versions(*self.packages)

    def worker_argv(self) -> list[str]:
        raise NotImplementedError

    def worker_env(self) -> dict[str, str]:
        """Extra environment of the worker process."""
        return {}

    def open(self, env: Env) -> PeerSession:
        raise NotImplementedError

    def reset(self, env: Env) -> None:
        """Empty the broker, so a session starts with no job queued."""
        assert env.redis is not None
        env.redis.flush()

    @asynccontextmanager
    async def session(self, env: Env, workers: bool) -> AsyncIterator[Session]:
        self.reset(env)
        session = self.open(env)
        try:
            yield session
        finally:
            for service in session.services:
                service.stop()
            await session.close()


class Missing(System):
    """A peer whose packages are not installed: every figure says so."""

    def __init__(self, key: str, label: str, why: str):
        self.key, self.label, self._why = key, label, why

    def unavailable(self) -> str | None:
        return self._why


def load_peers(names: Sequence[str] | None = None, concurrency: int | None = None) -> list[System]:
    """The peer adapters (call once BENCH_REDIS_URL and BENCH_HUEY_DB are set), each with
    its best worker concurrency, or `concurrency` for all."""
    out: list[System] = []
    for name, (label, modules) in PEERS.items():
        if names is not None and name not in names:
            continue
        why = missing_packages(*modules)
        if why is not None:
            out.append(Missing(name, label, why))
            continue
        peer = importlib.import_module(f"bench.peers.{name}").PEER
        peer.concurrency = concurrency or peer.best_concurrency
        out.append(peer)
    return out
