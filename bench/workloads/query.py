"""Query latency over HTTP with `query_tasks` tasks in the read model: GET one task by id,
and a filtered list of 100 (status=pending, one of the first ten pages). Timed by wrk (C),
one keep-alive connection, one request at a time, as the POST workload is: a Python client
would time itself. Measured side by side against the same server (1,000,000 tasks), a raw
socket client saw GET by id at p50 0.37 / p99 0.59 ms, httpx at 1.94 / 6.10 ms (python -m
bench.client_overhead measures it again)."""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from pathlib import Path
from typing import Any

import httpx

from bench.env import Env
from bench.ledger import JobledgerSystem
from bench.system import NotMeasured

from .http_load import parse_wrk
from .logs import BuiltLog, tasks_log

WARM_UP_S = 1
PATHS = 20_000  # distinct requests of each kind, cycled through
# wrk sends the paths of a file in turn; every response must be a 2xx (parse_wrk checks).
SCRIPT = """local paths = {{}}
for line in io.lines("{paths}") do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
"""


async def read_models_over(system: JobledgerSystem, env: Env) -> BuiltLog:
    """The tasks log with its read models rebuilt beside it (once per suite run)."""
    key = f"tasks-views-{system.key}"
    log = await tasks_log(system.mode, env)
    if key not in env.cache:
        start = time.monotonic()
        await system.mode.rebuild(log.path, system.mode.views_of(log.path))
        env.cache[key] = {"replay_events_per_s": round(log.events / (time.monotonic() - start))}
    return log


async def _check(url: str, ids: list[str], pages: list[int]) -> None:
    """What wrk cannot see: every list page holds 100 tasks, and ids are the ones asked."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for offset in sorted(set(pages)):
            response = await http.get(f"/api/v1/tasks?status=pending&limit=100&offset={offset}")
            rows = response.raise_for_status().json()
            if len(rows) != 100:
                raise RuntimeError(f"a filtered list of 100 returned {len(rows)} rows")
        for task_id in ids[:20]:
            got = (await http.get(f"/api/v1/tasks/{task_id}")).raise_for_status().json()
            if got["task_id"] != task_id:
                raise RuntimeError(f"GET /api/v1/tasks/{task_id} answered {got['task_id']}")


async def _wrk(url: str, paths: list[str], where: Path, seconds: int) -> dict[str, float]:
    """Latency percentiles of `paths`, one request at a time on one connection."""
    listed, script = where / "paths.txt", where / "paths.lua"
    listed.write_text("\n".join(paths) + "\n")
    script.write_text(SCRIPT.format(paths=listed))
    wrk = await asyncio.create_subprocess_exec(
        "wrk", "-t1", "-c1", f"-d{seconds}s", "--latency", "-s", str(script), url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    return parse_wrk((await wrk.communicate())[0].decode())


async def query(system: JobledgerSystem, env: Env) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise NotMeasured("not installed: wrk (apt-get install -y wrk)")
    log = await read_models_over(system, env)
    rng = random.Random(6)
    ids = [rng.choice(log.sample_ids) for _ in range(PATHS)]
    by_id = [f"/api/v1/tasks/{i}" for i in ids]
    pages = [rng.randrange(10) * 100 for _ in range(PATHS)]
    lists = [f"/api/v1/tasks?status=pending&limit=100&offset={p}" for p in pages]
    seconds, where = env.sizes.query_seconds, env.scratch(f"query-{system.key}")
    async with system.mode.serve_log(env, log.path) as server:
        await _check(server.url, ids, pages)
        figures = {}
        for kind, paths in (("get", by_id), ("list", lists)):
            await _wrk(server.url, paths, where, WARM_UP_S)
            figures[kind] = await _wrk(server.url, paths, where, seconds)
    get, listed = figures["get"], figures["list"]
    return {"get_p50_ms": get["p50_ms"], "get_p99_ms": get["p99_ms"],
            "list_p50_ms": listed["p50_ms"], "list_p99_ms": listed["p99_ms"],
            "details": {"tasks": log.jobs, "generator": f"wrk -t1 -c1 -d{seconds}s",
                        "get_per_s": get["req_per_s"], "list_per_s": listed["req_per_s"],
                        "read_models": env.cache[f"tasks-views-{system.key}"]}}
