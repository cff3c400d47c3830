"""The no-op job of every system, and how its timings get out of the worker process.

Every system under test runs the same job body, `job_started(payload)`, in its own worker
process. The payload names a file and how many jobs to expect; once that many have started,
the worker writes their start times, and the send times their payloads carry, to the file.
Every time is `time.monotonic()`: CLOCK_MONOTONIC, one clock shared by all the processes of
the machine, so a time taken by the benchmark and one taken by a worker can be subtracted.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_lock = threading.Lock()  # thread-pool workers (Celery, Huey, Dramatiq) call concurrently
_runs: dict[str, tuple[list[float | None], list[float]]] = {}


def job_payload(out: Path, expected: int, sent: float | None = None) -> dict[str, Any]:
    """The payload of a measured job. `sent`: when it was handed to the system's client."""
    payload: dict[str, Any] = {"out": str(out), "n": expected}
    if sent is not None:
        payload["t"] = sent
    return payload


def job_started(payload: Any) -> None:
    """The body of the no-op job: note the start; write the file once all have started."""
    now = time.monotonic()
    if not isinstance(payload, dict) or "out" not in payload:
        return  # a plain no-op (enqueue-only workloads never run their jobs)
    out = payload["out"]
    with _lock:
        sent, started = _runs.setdefault(out, ([], []))
        sent.append(payload.get("t"))
        started.append(now)
        if len(started) < payload["n"]:
            return
        del _runs[out]
    tmp = f"{out}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump({"sent": sent, "started": started, "pid": os.getpid()}, f)
    os.replace(tmp, out)  # the reader never sees half a file


@dataclass(frozen=True)
class Recorded:
    sent: list[float | None]
    started: list[float]

    @property
    def first_start(self) -> float:
        return min(self.started)

    @property
    def last_start(self) -> float:
        return max(self.started)

    def start_latencies(self) -> list[float]:
        """Seconds from send to handler start, for every job that carried a send time."""
        return [s - t for t, s in zip(self.sent, self.started, strict=True) if t is not None]


async def read_recorded(out: Path, timeout: float, check: Any = None) -> Recorded:
    """Wait for the worker to write `out`; `check()` (if given) raises if the worker died."""
    deadline = time.monotonic() + timeout
    while not out.exists():
        if check is not None:
            check()
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the jobs recorded in {out.name} did not all start in {timeout:g} s")
        await asyncio.sleep(0.01)
    data = json.loads(out.read_text())
    return Recorded(data["sent"], data["started"])
