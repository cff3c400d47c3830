"""What tracing costs the drain: the in-process drain of bench/profile_drain.py (N no-op
jobs enqueued, the queue resumed, timed until the read model shows all completed), with
tracing off, on with a sampler at 0, and on with the sampler at 1.0 and an exporter that
drops every span (behind the SDK's BatchSpanProcessor, as an OTLP exporter would be),
alternated with the order rotated each round (A B C, B C A, C A B, ...) so that a machine's
drift, and what one run leaves the next, fall on every arm alike.

    python -m bench.tracing_overhead [--jobs 20000] [--rounds 6]

Prints each run, the ratios of the medians (jobs/s on / off) and the median of each
round's own ratio, by the wall clock and by the process's CPU time over the drain (all its
threads): on a machine shared with other work the wall clock mostly measures the
neighbours, the CPU time what tracing adds.
Recorded in docs/performance.md ("Tracing").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from .env import Env, Sizes
from .ledger import EmbeddedMode
from .profile_drain import drain
from .run import JOBLEDGER_SLOTS


def _arms() -> dict[str, Any]:
    """Each arm's Telemetry (None: off)."""
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from jobledger.services.telemetry.setup import build

    class Dropping(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    def traced(ratio: float) -> Any:
        return build(BatchSpanProcessor(Dropping()), InMemoryMetricReader(),
                     ParentBased(TraceIdRatioBased(ratio)))

    return {"off": lambda: None, "sampler 0": lambda: traced(0.0),
            "sampler 1.0, dropped": lambda: traced(1.0)}


async def main(jobs: int, rounds: int) -> None:
    mode = EmbeddedMode(JOBLEDGER_SLOTS)
    with tempfile.TemporaryDirectory(prefix="tracing-overhead-") as tmp:
        env = Env(Sizes(drain_jobs=jobs), Path(tmp))
        rates: dict[str, list[tuple[float, float]]] = {}
        arms = list(_arms().items())
        for round_no in range(rounds):
            # Each round starts one arm later (A B C, B C A, C A B, ...): a run pays for what
            # the run before it left behind (its garbage, a cold cache), and the sampler-1.0
            # run leaves the most, so a fixed order would always charge it to `off`.
            turn = round_no % len(arms)
            for arm, make in arms[turn:] + arms[:turn]:
                telemetry, cpu = make(), [0.0]

                @asynccontextmanager
                async def cpu_time(cpu: list[float] = cpu) -> AsyncIterator[None]:
                    start = time.process_time()
                    yield
                    cpu[0] = time.process_time() - start

                seconds = await drain(mode, env, cpu_time, telemetry)
                if telemetry is not None:
                    telemetry.shutdown()
                rates.setdefault(arm, []).append((jobs / seconds, jobs / cpu[0]))
                print(f"round {round_no + 1} {arm:>22}: {jobs / seconds:8,.0f} jobs/s, "
                      f"{jobs / cpu[0]:8,.0f} jobs per CPU-second", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at the end")
    off = [statistics.median(r[i] for r in rates["off"]) for i in (0, 1)]
    for arm, values in rates.items():
        wall, cpu_rate = (statistics.median(r[i] for r in values) for i in (0, 1))
        # Each round's own ratio (against the off run just before it) drifts less with
        # the machine's load than the ratio of the medians.
        paired = [statistics.median(v[i] / o[i] for v, o in zip(values, rates["off"],
                                                                strict=True)) for i in (0, 1)]
        print(f"{arm:>22}: median {wall:8,.0f} jobs/s ({wall / off[0]:.3f} of off), "
              f"{cpu_rate:8,.0f} jobs per CPU-second ({cpu_rate / off[1]:.3f} of off); "
              f"median of the rounds' ratios {paired[0]:.3f} by jobs/s, {paired[1]:.3f} by CPU")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=6)  # a multiple of 3: every order
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.rounds))
