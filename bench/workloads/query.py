"""Query latency over HTTP with `query_tasks` tasks in the read model: GET one task by id,
and a filtered list of 100 (status=pending, one of the first ten pages), one request at a
time from one keep-alive httpx client, timed at the client, whose collector is off meanwhile
(measure.no_gc_pauses)."""

from __future__ import annotations

import random
import time
from typing import Any

import httpx

from bench.env import Env
from bench.ledger import JobledgerSystem
from bench.measure import latency_ms, no_gc_pauses

from .logs import BuiltLog, tasks_log

WARM_UP = 50
BUDGET_S = 30.0  # per kind of request and run: a slow query ends its series early


async def read_models_over(system: JobledgerSystem, env: Env) -> BuiltLog:
    """The tasks log with its read models rebuilt beside it (once per suite run)."""
    key = f"tasks-views-{system.key}"
    log = await tasks_log(system.mode, env)
    if key not in env.cache:
        start = time.monotonic()
        await system.mode.rebuild(log.path, system.mode.views_of(log.path))
        env.cache[key] = {"replay_events_per_s": round(log.events / (time.monotonic() - start))}
    return log


async def _timed(http: httpx.AsyncClient, paths: list[str], check: Any) -> list[float]:
    """Seconds of each GET, one at a time, until the paths or BUDGET_S run out."""
    out: list[float] = []
    deadline = time.monotonic() + BUDGET_S
    for path in paths:
        start = time.perf_counter()
        response = await http.get(path)
        out.append(time.perf_counter() - start)
        response.raise_for_status()
        check(response.json())
        if time.monotonic() > deadline and len(out) > 2 * WARM_UP:
            break
    return out


def _has_100(rows: Any) -> None:
    if len(rows) != 100:
        raise RuntimeError(f"a filtered list of 100 returned {len(rows)} rows")


async def query(system: JobledgerSystem, env: Env) -> dict[str, Any]:
    log = await read_models_over(system, env)
    requests = env.sizes.query_requests
    rng = random.Random(6)
    ids = [rng.choice(log.sample_ids) for _ in range(requests + WARM_UP)]
    pages = [rng.randrange(10) * 100 for _ in range(requests + WARM_UP)]
    async with system.mode.serve_log(env, log.path) as server, httpx.AsyncClient(
        base_url=server.url, timeout=30
    ) as http:
        with no_gc_pauses():  # a pause of this process would be timed as the server's
            by_id = await _timed(http, [f"/api/v1/tasks/{i}" for i in ids], lambda _: None)
            lists = await _timed(
                http, [f"/api/v1/tasks?status=pending&limit=100&offset={p}" for p in pages],
                _has_100)
    get, listed = latency_ms(by_id[WARM_UP:]), latency_ms(lists[WARM_UP:])
    return {"get_p50_ms": get["p50_ms"], "get_p99_ms": get["p99_ms"],
            "list_p50_ms": listed["p50_ms"], "list_p99_ms": listed["p99_ms"],
            "details": {"tasks": log.jobs, "get_requests": len(by_id) - WARM_UP,
                        "list_requests": len(lists) - WARM_UP,
                        "read_models": env.cache[f"tasks-views-{system.key}"]}}
