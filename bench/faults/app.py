"""The handlers of the fault-injection suite's worker processes (`--app bench.faults.app:app`).

`sleep` sleeps `payload["s"]` seconds (0 for a no-op); `poison` misbehaves as
`payload["how"]` says: "raise", "abort" (os.abort() kills the whole worker process) or
"blowup" (allocates past an address-space limit it sets, in a sync handler). What ran
is counted from the log (bench/faults/history.py), not by these handlers.
"""

from __future__ import annotations

import asyncio
import os
import resource
from typing import Any

from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext

app = App()
BLOWUP_BYTES = 8 * 2**30  # more than the capped address space: MemoryError


def _address_space() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


@app.job("sleep", max_retries=20)
async def sleep(ctx: JobContext, payload: Any) -> dict[str, int]:
    seconds = float(payload.get("s", 0)) if isinstance(payload, dict) else 0.0
    if seconds:
        await asyncio.sleep(seconds)
    return {"attempt": ctx.attempt}


@app.job("poison", max_retries=2)
def poison(ctx: JobContext, payload: Any) -> None:
    how = payload.get("how") if isinstance(payload, dict) else None
    if how == "abort":
        os.abort()
    if how == "blowup":
        # As under a container's memory limit, without touching the shared machine's
        # memory: the address space is capped just above what the process has, so the
        # allocation fails at once with MemoryError; the cap is lifted after.
        before = resource.getrlimit(resource.RLIMIT_AS)
        cap = _address_space() + 256 * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (cap, before[1]))
        try:
            hog = bytearray(BLOWUP_BYTES)
            hog[-1] = 1
        finally:
            resource.setrlimit(resource.RLIMIT_AS, before)
    raise RuntimeError(f"poison job ({how})")
