"""WebSocket fan-out: 1,000 subscribers on one `jobledger serve` (no workers, so each job
makes exactly one task_update: its enqueue), p50/p99 from the enqueue to each subscriber's
receipt of that job's update, over every (subscriber, job) pair.

The clock starts when the POST that appends the job is sent (the POST answers only once the
job is durable and projected, so the append itself is a little later: the figure is an
upper bound of append-to-client). The subscribers run in two child processes (websockets,
one task each, no JSON parsing) and time arrivals with the same monotonic clock; on two
cores they still compete with the server, and their CPU time is reported."""

from __future__ import annotations

import asyncio
import multiprocessing
import re
import time
from typing import Any

import websockets

from bench.env import Env
from bench.ledger import JobledgerSystem
from bench.measure import latency_ms, steady

JOBS_PER_S = 5  # each job is SUBSCRIBERS messages: the load is on the fan-out, not the log
CONNECT_IN_FLIGHT = 50  # handshakes at once while the subscribers connect
CLIENT_PROCESSES = 2  # the subscribers' own CPU is spread over processes, as real ones are
_TASK_ID = re.compile(r'"task_id":"([^"]+)"')


async def ws_fanout(system: JobledgerSystem, env: Env) -> dict[str, Any]:
    subscribers = env.sizes.ws_subscribers
    jobs = int(JOBS_PER_S * env.sizes.lag_seconds * 2)
    sent: dict[str, float] = {}
    async with system.mode.serve(env, env.scratch(f"ws-{system.key}"), workers=False) as server:
        url = server.url.replace("http://", "ws://") + "/ws"
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        counts = [subscribers // CLIENT_PROCESSES + (i < subscribers % CLIENT_PROCESSES)
                  for i in range(CLIENT_PROCESSES)]
        ready = context.Barrier(CLIENT_PROCESSES + 1)
        procs = [context.Process(target=_subscriber_process, args=(url, n, jobs, ready, results))
                 for n in counts]
        for proc in procs:
            proc.start()
        await asyncio.to_thread(ready.wait, 120)  # every subscription answered

        async def send(k: int) -> None:
            start = time.monotonic()
            reply = await server.http.post("/api/v1/tasks", json={"task_type": "noop"})
            sent[reply.json()["task_id"]] = start

        await steady(JOBS_PER_S, jobs, send)
        gathered = [await asyncio.to_thread(results.get, True, 120) for _ in procs]
        for proc in procs:
            await asyncio.to_thread(proc.join, 30)
    samples = [at - sent[job] for got, _cpu in gathered for arrivals in got
               for job, at in arrivals.items() if job in sent]
    return {**latency_ms(samples), "details": {
        "subscribers": subscribers, "jobs": jobs, "messages": len(samples),
        "client_processes": CLIENT_PROCESSES,
        "client_cpu_seconds": round(sum(cpu for _, cpu in gathered), 2)}}


def _subscriber_process(url: str, count: int, jobs: int, ready: Any, results: Any) -> None:
    results.put(asyncio.run(_subscribe(url, count, jobs, ready)))


async def _subscribe(url: str, count: int, jobs: int, ready: Any) -> tuple[list[dict[str, float]], float]:
    gate = asyncio.Semaphore(CONNECT_IN_FLIGHT)

    async def connect() -> Any:
        async with gate:
            ws = await websockets.connect(url, open_timeout=60, ping_interval=None)
            await ws.send('{"type": "subscribe"}')
            await ws.recv()  # subscribed
            return ws

    connections = await asyncio.gather(*(connect() for _ in range(count)))
    await asyncio.to_thread(ready.wait, 120)
    cpu = time.process_time()
    arrivals = await asyncio.gather(*(_read(ws, jobs) for ws in connections))
    cpu = time.process_time() - cpu
    await asyncio.gather(*(ws.close() for ws in connections))
    return list(arrivals), cpu


async def _read(ws: Any, jobs: int) -> dict[str, float]:
    """Arrival time of each job's update, without parsing the JSON: the client's own CPU
    would otherwise be part of the figure."""
    got: dict[str, float] = {}
    while len(got) < jobs:
        raw = await asyncio.wait_for(ws.recv(), 120)
        now = time.monotonic()
        match = _TASK_ID.search(raw)
        if match:
            got.setdefault(match.group(1), now)
    return got
