"""Replay: the whole log read back into fresh read models (what `jobledger replay` does
before it prints checksums), in events/s."""

from __future__ import annotations

import time
from typing import Any

from bench.env import Env
from bench.ledger import JobledgerSystem

from .logs import replay_log


async def replay(system: JobledgerSystem, env: Env) -> dict[str, Any]:
    log = await replay_log(system.mode, env)
    out = env.scratch(f"replay-{system.key}") / "rebuilt.db"
    start = time.monotonic()
    await system.mode.rebuild(log.path, out)
    seconds = time.monotonic() - start
    return {"events_per_s": log.events / seconds,
            "details": {"events": log.events, "seconds": round(seconds, 2), "log": log.describe()}}
