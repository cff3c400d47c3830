"""How much of a timed GET is the HTTP client's own time: one `jobledger serve
--no-workers` with 10,000 tasks, GET /api/v1/tasks/{id} one request at a time on one
keep-alive connection, timed at a raw asyncio socket, at aiohttp and at httpx, alternated.

    python -m bench.client_overhead

Why the query workload (bench/workloads/query.py) is timed by wrk: a Python client adds
its own time, and most of its tail. Results are recorded in docs/performance.md ("What
each figure means", queries)."""

from __future__ import annotations

import asyncio
import gc
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import httpx

from .env import Env, Sizes
from .ledger import EmbeddedMode

TASKS = 10_000
REQUESTS = 3_000  # timed per client and round, after WARM_UP
WARM_UP = 100
ROUNDS = 2

Timer = Callable[[str, list[str]], Awaitable[list[float]]]


async def _raw(url: str, paths: list[str]) -> list[float]:
    """Plain HTTP/1.1 on one socket: the server's answer and little else."""
    where = urlsplit(url)
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    out = []
    try:
        for path in paths:
            start = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {where.netloc}\r\n\r\n".encode())
            head = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
            length = int(head.split("content-length:")[1].split("\r\n")[0])
            await reader.readexactly(length)
            out.append(time.perf_counter() - start)
    finally:
        writer.close()
    return out


async def _aiohttp(url: str, paths: list[str]) -> list[float]:
    out = []
    async with aiohttp.ClientSession(url) as http:
        for path in paths:
            start = time.perf_counter()
            async with http.get(path) as response:
                await response.read()
            out.append(time.perf_counter() - start)
    return out


async def _httpx(url: str, paths: list[str]) -> list[float]:
    out = []
    async with httpx.AsyncClient(base_url=url) as http:
        for path in paths:
            start = time.perf_counter()
            (await http.get(path)).read()
            out.append(time.perf_counter() - start)
    return out


def _percentiles(seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    return f"p50 {ms[len(ms) // 2]:.2f} ms, p99 {ms[int(len(ms) * 0.99)]:.2f} ms"


async def main() -> None:
    from jobledger.services.client.async_client import Client
    from jobledger.services.write.producer import task_request

    with tempfile.TemporaryDirectory(prefix="jobledger-client-overhead-") as tmp:
        env = Env(Sizes(), Path(tmp))
        async with EmbeddedMode(1).serve(env, env.tmp, workers=False) as server:
            async with Client(server.url) as client:
                ids = await client.submit_many(
                    [task_request("noop", {"n": n}) for n in range(TASKS)])
            await _compare(server.url, ids)


async def _compare(url: str, ids: list[str]) -> None:
    rng = random.Random(6)
    timers: dict[str, Timer] = {"raw socket": _raw, "aiohttp": _aiohttp, "httpx": _httpx}
    gc.disable()  # the client's own collections are not the server's time either
    try:
        for round_ in range(ROUNDS):
            for name, timer in timers.items():
                paths = [f"/api/v1/tasks/{rng.choice(ids)}" for _ in range(WARM_UP + REQUESTS)]
                seconds = (await timer(url, paths))[WARM_UP:]
                print(f"round {round_ + 1}, {name:10s}: {_percentiles(seconds)}", flush=True)
    finally:
        gc.enable()


if __name__ == "__main__":
    asyncio.run(main())
