"""jobledger under test. A Mode says how to run it (embedded now; Kafka later, see
bench/kafka_mode.py); every jobledger workload is written against a Mode, so a new mode
runs them all. JobledgerSystem adapts a mode to the interface the peers share."""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from .env import Env
from .measure import wait_until
from .procs import Service, free_port
from .system import NotMeasured, Session, System, package_versions

NOOP_APP = "bench.noop_app:app"


class Server:
    """A running jobledger server: its processes and an HTTP client for the admin calls
    (stats, pause, resume) that the Python client does not offer."""

    def __init__(self, url: str, services: list[Service]):
        self.url = url
        self.services = services
        self.http = httpx.AsyncClient(base_url=url, timeout=30)

    async def ready(self, timeout: float = 30.0) -> None:
        async def answers() -> bool | None:
            for service in self.services:
                service.check_running()
            try:
                return (await self.http.get("/api/v1/stats")).status_code == 200 or None
            except httpx.HTTPError:
                return None

        await wait_until(answers, timeout, f"jobledger server at {self.url}", interval=0.05)

    async def stats(self) -> dict[str, Any]:
        response = await self.http.get("/api/v1/stats")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    async def set_paused(self, paused: bool, queue: str = "default") -> None:
        action = "pause" if paused else "resume"
        (await self.http.post(f"/api/v1/queues/{queue}/{action}")).raise_for_status()

    async def close(self) -> None:
        await self.http.aclose()
        for service in self.services:
            service.stop()


class Mode:
    """How to run jobledger for the benchmark. Every method may raise NotMeasured."""

    key: str
    label: str
    worker_processes: int = 1  # drain: processes that run jobs (the issue: 2 in Kafka mode)

    def unavailable(self) -> str | None:
        return None

    def settings(self) -> dict[str, Any]:
        return {}

    def serve(self, env: Env, where: Path, *, workers: bool) -> AbstractAsyncContextManager[Server]:
        """A server with the API (and, with workers, the worker slots running noop jobs)."""
        raise NotImplementedError

    def node(self, env: Env, where: Path,
             telemetry: Any = None) -> AbstractAsyncContextManager[Any]:
        """A node in this process (with `.commands` and `.projector`), running noop jobs
        (traced with `telemetry`, a jobledger Telemetry, if given)."""
        raise NotImplementedError

    async def write_log(self, where: Path, batches: AsyncIterator[list[Any]]) -> Path:
        """Append batches of (key, encoded envelope) straight through the log backend, as
        fast as it takes them; returns what `rebuild` and `serve_log` take."""
        raise NotImplementedError

    async def rebuild(self, log: Path, out: Path) -> None:
        """Replay the whole log into fresh read models at `out`."""
        raise NotImplementedError

    def views_of(self, log: Path) -> Path:
        """Where a server over `log` keeps its read models (what `rebuild` should write)."""
        raise NotImplementedError

    def serve_log(self, env: Env, log: Path) -> AbstractAsyncContextManager[Server]:
        """Serve the API (no workers) over a log whose read models `rebuild` wrote."""
        raise NotImplementedError

    def close(self) -> None:
        """At the end of the suite: stop what outlives one run (e.g. a log's broker)."""


class EmbeddedMode(Mode):
    """`jobledger serve` over one SQLite file: log, projections, dispatcher, worker slots
    and the HTTP API in one process."""

    key = "jobledger"
    label = "jobledger (embedded)"

    def __init__(self, slots: int):
        self.slots = slots

    def settings(self) -> dict[str, Any]:
        return {
            "processes": "one: `jobledger serve` (log, projections, dispatcher, worker slots, API)",
            "worker_slots": self.slots, "partitions": 4,
            "durability": "log: SQLite WAL, synchronous=FULL, group commit (acked once fsynced)",
            "in_process": "projection lag and the drain profile use an EmbeddedNode in the "
                          "benchmark process",
        }

    def _serve_argv(self, db: Path, port: int, *extra: str) -> list[str]:
        return [sys.executable, "-m", "jobledger.services.cli.main", "serve", "--db", str(db),
                "--port", str(port), "--app", NOOP_APP, "--concurrency", str(self.slots), *extra]

    @asynccontextmanager
    async def _server(self, env: Env, db: Path, *extra: str) -> AsyncIterator[Server]:
        port = free_port()
        service = Service(f"jobledger-serve-{port}", self._serve_argv(db, port, *extra),
                          db.parent, env.child_env())
        server = Server(f"http://127.0.0.1:{port}", [service])
        try:
            await server.ready()
            yield server
        finally:
            await server.close()

    def serve(self, env: Env, where: Path, *, workers: bool) -> AbstractAsyncContextManager[Server]:
        return self._server(env, where / "j.db", *(() if workers else ("--no-workers",)))

    def serve_log(self, env: Env, log: Path) -> AbstractAsyncContextManager[Server]:
        return self._server(env, log, "--no-workers")

    @asynccontextmanager
    async def node(self, env: Env, where: Path, telemetry: Any = None) -> AsyncIterator[Any]:
        from jobledger.services.node.embedded import EmbeddedNode, NodeConfig
        from jobledger.services.runtime.dispatcher import DispatcherConfig
        from jobledger.services.runtime.gc_tuning import tune_gc

        from .noop_app import app

        config = NodeConfig(db=where / "j.db", dispatcher=DispatcherConfig(concurrency=self.slots),
                            telemetry=telemetry)
        threshold = gc.get_threshold()
        tune_gc()  # as in `jobledger serve`'s process, for as long as the node runs here
        try:
            async with EmbeddedNode(config, app) as node:
                yield node
        finally:
            gc.set_threshold(*threshold)

    async def write_log(self, where: Path, batches: AsyncIterator[list[Any]]) -> Path:
        from jobledger.schemas import JOBS, LOGS, WORKERS
        from jobledger.services.log.protocol import Entry
        from jobledger.services.log.sqlite import SQLiteLogBackend

        db = where / "log.db"
        backend = await SQLiteLogBackend.open(db, {JOBS: 4, LOGS: 4, WORKERS: 1})
        try:
            async for batch in batches:
                await backend.topic(JOBS).append([Entry(key, value) for key, value in batch])
        finally:
            await backend.close()
        return db

    async def rebuild(self, log: Path, out: Path) -> None:
        from jobledger.services.replay.rebuild import rebuild

        await rebuild(log, out, show_progress=False)

    def views_of(self, log: Path) -> Path:
        from jobledger.services.node.embedded import views_path

        return views_path(log)


class JobledgerSession(Session):
    batch_api = "Client.submit_many: POST /api/v1/tasks/batch, 1,000 jobs a request"

    def __init__(self, server: Server, workers: bool):
        super().__init__()
        from jobledger.services.client.async_client import Client

        self.server = server
        self.services = server.services
        self.client = Client(server.url)
        self.workers = workers

    async def submit_one(self, payload: dict[str, Any]) -> None:
        await self.client.submit("noop", payload)

    async def submit_batch(self, payloads: list[dict[str, Any]]) -> None:
        from jobledger.services.write.producer import task_request

        await self.client.submit_many([task_request("noop", p) for p in payloads])

    async def start_worker(self) -> None:
        await self.server.set_paused(False)

    async def settled(self, jobs: int) -> None:
        async def pending() -> bool | None:
            return (await self.server.stats())["pending_count"] >= jobs or None

        await wait_until(pending, 120, f"{jobs} jobs pending in the read model", interval=0.05)

    async def completed_at(self, jobs: int, timeout: float) -> float | None:
        async def done() -> float | None:
            stats = await self.server.stats()
            return time.monotonic() if stats["completed_count"] >= jobs else None

        return await wait_until(done, timeout, f"{jobs} jobs completed in the read model")


class JobledgerSystem(System):
    """jobledger in a given mode, seen through the interface every peer implements."""

    def __init__(self, mode: Mode):
        self.mode = mode
        self.key = mode.key
        self.label = mode.label

    def unavailable(self) -> str | None:
        return self.mode.unavailable()

    def settings(self) -> dict[str, Any]:
        return self.mode.settings()

    def versions(self) -> dict[str, str]:
        return package_versions("jobledger", "msgspec", "aiosqlite", "starlette", "uvicorn",
                                "uvloop", "httptools", "httpx")

    @asynccontextmanager
    async def session(self, env: Env, workers: bool) -> AsyncIterator[Session]:
        async with self.mode.serve(env, env.scratch(self.key), workers=workers) as server:
            session = JobledgerSession(server, workers)
            try:
                if workers:  # nothing runs until start_worker() resumes the queue
                    await server.set_paused(True)
                yield session
            finally:
                await session.client.close()


__all__ = ["EmbeddedMode", "JobledgerSystem", "Mode", "NotMeasured", "Server"]
