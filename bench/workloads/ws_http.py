"""The HTTP API beside a WebSocket fan-out (issue 18, item 6): `ws_http_subscribers`
subscribers to every task on one `jobledger serve --no-workers`, `ws_http_jobs` tasks posted
in batches of 100 (each task makes one task_update per subscriber: 2 M messages at the full
sizes), and meanwhile GET /health and GET /api/v1/tasks/{id} probed at PROBES_PER_S each.

The figures are the probes' latencies from the moment each was due (open loop: a request
that waits for a stalled server counts its wait, and the next one is not held back), over
the whole fan-out: from the first batch POST until every subscriber has its last update or
was closed. The probes are plain HTTP/1.1 on keep-alive sockets (a pool, a new socket only
when every open one is busy): an HTTP client library would add its own milliseconds and
most of its own tail (bench/client_overhead.py). The task asked for is one posted before the
subscribers connect, so its lookups read the read model, not a cache of the fan-out.

The details give the fan-out's duration and rate, the subscribers closed by the server
(1013: fell behind the ring) and the server's CPU per delivered message. The subscribers
are the ws_fanout workload's (bench/workloads/ws.py), counting text frames instead of
timing each task, in two processes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

import uvloop

from bench.env import Env
from bench.ledger import JobledgerSystem
from bench.measure import percentile

from .ws import _Subscriber, connect_subscribers, results_of, start_subscribers

BATCH = 100  # tasks per POST /api/v1/tasks/batch
BATCHES_PER_S = 10  # 1,000 tasks/s: far more messages than the fan-out can send at once
PROBES_PER_S = 50  # of each endpoint
PROBE_TIMEOUT_S = 30.0


async def ws_http(system: JobledgerSystem, env: Env) -> dict[str, Any]:
    subscribers, jobs = env.sizes.ws_http_subscribers, env.sizes.ws_http_jobs
    async with system.mode.serve(env, env.scratch(f"wshttp-{system.key}"),
                                 workers=False) as server:
        task_id = (await server.http.post("/api/v1/tasks", json={"task_type": "noop"})
                   ).json()["task_id"]
        url = server.url.replace("http://", "ws://") + "/ws"
        procs, results = await start_subscribers(_subscriber_process, url, subscribers, jobs)
        server_cpu = sum(s.cpu_seconds() for s in server.services)
        probe = _Probe(server.url)
        started = time.monotonic()
        probing = asyncio.ensure_future(probe.run(
            {"health": "/health", "get": f"/api/v1/tasks/{task_id}"}))
        await _post(server.http, jobs)
        gathered = await results_of(procs, results, 300)
        probing.cancel()
        await asyncio.gather(probing, return_exceptions=True)
        await probe.finish()
        server_cpu = sum(s.cpu_seconds() for s in server.services) - server_cpu
    return _figures(probe, gathered, started, server_cpu, subscribers, jobs)


async def _post(http: Any, jobs: int) -> None:
    """`jobs` tasks in batches at BATCHES_PER_S, open loop."""
    start = time.monotonic()
    posts = []
    for k, first in enumerate(range(0, jobs, BATCH)):
        delay = start + k / BATCHES_PER_S - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        size = min(BATCH, jobs - first)
        posts.append(asyncio.ensure_future(http.post(
            "/api/v1/tasks/batch", json={"tasks": [{"task_type": "noop"}] * size})))
    for reply in await asyncio.gather(*posts):
        reply.raise_for_status()


def _figures(probe: _Probe, gathered: list[dict[str, Any]], started: float, server_cpu: float,
             subscribers: int, jobs: int) -> dict[str, Any]:
    fanout_s = max(got["done_at"] for got in gathered) - started
    messages = sum(got["messages"] for got in gathered)
    out: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for name, samples in probe.samples.items():
        out[f"{name}_p50_ms"] = percentile(samples, 50) * 1000
        out[f"{name}_p99_ms"] = percentile(samples, 99) * 1000
        details[f"{name}_max_ms"] = round(max(samples) * 1000, 1)
        details[f"{name}_probes"] = len(samples)
    return {**out, "details": {
        **details, "not_200": probe.not_200, "subscribers": subscribers, "jobs": jobs,
        "messages": messages, "fanout_s": round(fanout_s, 2),
        "messages_per_s": round(messages / fanout_s),
        "subscribers_closed": sum(got["closed"] for got in gathered),
        "server_cpu_seconds": round(server_cpu, 2),
        "server_cpu_us_per_message": round(server_cpu / max(messages, 1) * 1e6, 2),
        "client_cpu_seconds": round(sum(got["cpu"] for got in gathered), 2)}}


class _Probe:
    """GETs on a pool of keep-alive sockets, each timed from when it was due."""

    def __init__(self, url: str):
        where = urlsplit(url)
        self.host, self.port, self.netloc = where.hostname, where.port, where.netloc
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.samples: dict[str, list[float]] = {}
        self.not_200: dict[str, int] = {}
        self.pending: set[asyncio.Task[None]] = set()

    async def run(self, paths: dict[str, str]) -> None:
        """Every path PROBES_PER_S times a second, in turn, until cancelled."""
        interval = 1 / (PROBES_PER_S * len(paths))
        start, k = time.monotonic(), 0
        while True:
            for name, path in paths.items():
                due = start + k * interval
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                task = asyncio.ensure_future(self._get(name, path, due))
                self.pending.add(task)
                task.add_done_callback(self.pending.discard)
                k += 1

    async def finish(self) -> None:
        await asyncio.wait_for(asyncio.gather(*self.pending), PROBE_TIMEOUT_S)
        for _, writer in self.idle:
            writer.close()

    async def _get(self, name: str, path: str, due: float) -> None:
        if self.idle:
            reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.netloc}\r\n\r\n".encode())
        head = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
        length = int(head.split("content-length:")[1].split("\r\n")[0])
        await reader.readexactly(length)
        self.samples.setdefault(name, []).append(time.monotonic() - due)
        if not head.startswith("http/1.1 200"):
            self.not_200[name] = self.not_200.get(name, 0) + 1
        self.idle.append((reader, writer))


# -- the subscriber processes ------------------------------------------------------------------


def _subscriber_process(url: str, count: int, jobs: int, ready: Any, results: Any) -> None:
    results.put(uvloop.run(_subscribe(url, count, jobs, ready)))


async def _subscribe(url: str, count: int, jobs: int, ready: Any) -> dict[str, Any]:
    subs = await connect_subscribers(url, count, lambda uri: _Counter(uri, jobs))
    await asyncio.to_thread(ready.wait, 120)
    cpu = time.process_time()
    await asyncio.wait_for(asyncio.gather(*(s.done for s in subs)), 300)
    cpu = time.process_time() - cpu
    for sub in subs:
        sub.transport.close()
    return {"messages": sum(s.count for s in subs), "closed": sum(s.closed for s in subs),
            "done_at": max(s.done_at for s in subs), "cpu": cpu}


class _Counter(_Subscriber):
    """Counts task updates: once subscribed, a payload is never copied or parsed (2 M
    messages must cost the two cores little); done at the last update, or when the server
    closes the connection."""

    def __init__(self, uri: Any, jobs: int):
        super().__init__(uri, jobs, {})
        self.count = 0
        self.closed = False
        self.done_at = 0.0

    def _message(self, data: bytes, now: float) -> None:
        if self.subscribed.done():
            self._count(now)
        else:
            super()._message(data, now)

    def _text(self, buf: bytearray, start: int, end: int, now: float) -> None:
        self._count(now)

    def _count(self, now: float) -> None:
        self.count += 1
        if self.count >= self.jobs and not self.done.done():
            self.done_at = now
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.subscribed.done() and not self.done.done():
            self.closed = True
            self.done_at = time.monotonic()
            self.done.set_result(None)
        super().connection_lost(exc)
