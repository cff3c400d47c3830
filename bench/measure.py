"""Turning raw measurements into figures: summaries of repeated runs, percentiles, a steady
open-loop load, and bounded waits for things another process does."""

from __future__ import annotations

import asyncio
import gc
import math
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


def summary(values: Sequence[float]) -> dict[str, Any]:
    """The figure of a cell: median of the runs, with min and max (and every run's value)."""
    digits = 3 if max(abs(v) for v in values) < 100 else 1
    return {
        "median": round(statistics.median(values), digits), "min": round(min(values), digits),
        "max": round(max(values), digits), "runs": len(values),
        "values": [round(v, digits) for v in values],
    }


def percentile(samples: Sequence[float], q: float) -> float:
    """The nearest-rank q-th percentile (0 < q <= 100) of samples."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_ms(samples_s: Sequence[float]) -> dict[str, float]:
    """p50 and p99 of latencies given in seconds, in milliseconds."""
    return {"p50_ms": percentile(samples_s, 50) * 1000, "p99_ms": percentile(samples_s, 99) * 1000}


@contextmanager
def no_gc_pauses() -> Iterator[None]:
    """The collector off while a latency is measured: a full collection of the benchmark's
    own heap stops its event loop for tens of ms, a pause every system would be blamed for."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


async def steady(rate: float, batches: int, send: Callable[[int], Awaitable[None]]) -> float:
    """Call send(k) for k in range(batches) at `rate` calls per second, open loop: a slow
    send does not delay the next one (so a stall shows as latency, not as a slower load).
    Returns the rate achieved, in calls per second."""
    start = time.monotonic()
    running: list[asyncio.Task[None]] = []
    for k in range(batches):
        delay = start + k / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        running.append(asyncio.ensure_future(send(k)))
    sent = time.monotonic() - start
    await asyncio.gather(*running)
    return batches / sent if sent > 0 else float("inf")


async def wait_until(
    probe: Callable[[], Awaitable[T | None]], timeout: float, what: str, interval: float = 0.01
) -> T:
    """Poll probe() until it returns something other than None (another process is doing
    the work, so there is nothing to await); raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done after {timeout:g} s")
        await asyncio.sleep(interval)
