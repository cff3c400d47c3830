"""The one interface every system under test implements (jobledger and each peer), so that
the drain, enqueue and latency workloads are the same code for all of them."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from .env import Env
from .procs import Service


class NotMeasured(Exception):
    """A figure the suite does not measure yet, or cannot here; the message says why."""


class Session:
    """One fresh instance of a system, for one run of one workload: its queue is empty, and
    no job runs before start_worker()."""

    batch_api: str | None = None  # how it enqueues many jobs in one call; None: it cannot

    def __init__(self) -> None:
        self.services: list[Service] = []  # its processes, for memory figures

    async def submit_one(self, payload: dict[str, Any]) -> None:
        """Enqueue one no-op job through the system's own client; return once it is accepted."""
        raise NotImplementedError

    async def submit_batch(self, payloads: list[dict[str, Any]]) -> None:
        """Enqueue many jobs in one call (only when batch_api is set)."""
        raise NotImplementedError

    async def preload(self, payloads: list[dict[str, Any]], batch: int) -> None:
        """Enqueue jobs before a measurement (untimed): the fastest way the system offers."""
        if self.batch_api is None:
            for payload in payloads:
                await self.submit_one(payload)
        else:
            for i in range(0, len(payloads), batch):
                await self.submit_batch(payloads[i : i + batch])

    async def start_worker(self) -> None:
        """Let the one worker process run jobs (start it, or resume its queue)."""
        raise NotImplementedError

    async def settled(self, jobs: int) -> None:
        """Return once `jobs` enqueued jobs are all visible as pending (where it can tell)."""

    async def completed_at(self, jobs: int, timeout: float) -> float | None:
        """When (time.monotonic()) the system's own records first showed `jobs` jobs
        completed; None for a system that keeps no record of finished no-op jobs."""
        return None

    def check_running(self) -> None:
        for service in self.services:
            service.check_running()


class System:
    key: str  # a short name: the JSON key and the --systems name
    label: str  # the column heading

    def unavailable(self) -> str | None:
        """Why it cannot run here (a missing package or program), else None."""
        return None

    def settings(self) -> dict[str, Any]:
        """How it is configured in this suite (worker concurrency, pool, durability)."""
        return {}

    def versions(self) -> dict[str, str]:
        return {}

    def session(self, env: Env, workers: bool) -> AbstractAsyncContextManager[Session]:
        """A fresh instance; workers=False: enqueue only, no worker will be started."""
        raise NotImplementedError


def package_versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def missing_packages(*modules: str) -> str | None:
    """'pip install ...' advice naming the modules that cannot be imported, else None."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return f"not installed: {', '.join(missing)} (pip install -e '.[bench]')" if missing else None
