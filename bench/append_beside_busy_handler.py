"""How long an append to the SQLite log takes while a sync handler is busy in Python on a
thread of its own (it holds the GIL except at the interpreter's 5 ms switch interval).

    python -m bench.append_beside_busy_handler

Prints the time to append 1, 100 and 1,000 entries of 400 bytes, each the median of 5.
Results are recorded in docs/performance.md ("The log writer beside a busy handler")."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path

from jobledger.services.log.protocol import Entry
from jobledger.services.log.sqlite import SQLiteLogBackend

SIZES = (1, 100, 1000)
REPEATS = 5


def _busy(stop: threading.Event) -> None:
    """A CPU-bound sync handler: Python bytecode, no blocking call."""
    n = 0
    while not stop.is_set():
        for _ in range(10_000):
            n += 1


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = await SQLiteLogBackend.open(Path(tmp) / "log.db", partitions={"jobs": 4})
        stop = threading.Event()
        handler = threading.Thread(target=_busy, args=(stop,))
        handler.start()
        try:
            for size in SIZES:
                entries = [Entry(f"k{i}", b"x" * 400) for i in range(size)]
                times = []
                for _ in range(REPEATS):
                    start = time.perf_counter()
                    await log.topic("jobs").append(entries)
                    times.append(time.perf_counter() - start)
                print(f"{size:5d} entries: {1e3 * statistics.median(times):8.1f} ms "
                      f"(min {1e3 * min(times):.1f}, max {1e3 * max(times):.1f})")
        finally:
            stop.set()
            handler.join()
            await log.close()


if __name__ == "__main__":
    asyncio.run(main())
