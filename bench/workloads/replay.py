"""Replay: the whole log read back into fresh read models (what `jobledger replay` does
before it prints checksums), in events/s."""

from __future__ import annotations

import resource
import time
from typing import Any

from bench.env import Env
from bench.ledger import JobledgerSystem

from .logs import replay_log


def _cpu_seconds() -> float:
    """This process's CPU and its finished children's: the embedded replay folds the jobs
    topic in worker processes (services/replay/bulk.py)."""
    usages = map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return sum(u.ru_utime + u.ru_stime for u in usages)


async def replay(system: JobledgerSystem, env: Env) -> dict[str, Any]:
    log = await replay_log(system.mode, env)
    out = env.scratch(f"replay-{system.key}") / "rebuilt.db"
    start, cpu = time.monotonic(), _cpu_seconds()
    await system.mode.rebuild(log.path, out)
    seconds, cpu = time.monotonic() - start, _cpu_seconds() - cpu
    # CPU per event drifts less than events/s when other work shares the machine.
    return {"events_per_s": log.events / seconds,
            "details": {"events": log.events, "seconds": round(seconds, 2),
                        "cpu_seconds": round(cpu, 2),
                        "cpu_us_per_event": round(cpu / log.events * 1e6, 1),
                        "log": log.describe()}}
