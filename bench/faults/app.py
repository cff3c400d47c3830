"""The handlers of the fault-injection suite's worker processes (`--app bench.faults.app:app`).

`sleep` sleeps `payload["s"]` seconds (0 for a no-op); `poison` misbehaves as
`payload["how"]` says: "raise", "abort" (os.abort() kills the whole worker process) or
"blowup" (allocates past the process's address-space limit in a sync handler). What ran
is counted from the log (bench/faults/history.py), not by these handlers.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext

app = App()
BLOWUP_BYTES = 8 * 2**30  # more than any worker may have: MemoryError, or the OOM killer


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
        hog = bytearray(BLOWUP_BYTES)
        hog[-1] = 1
    raise RuntimeError(f"poison job ({how})")
