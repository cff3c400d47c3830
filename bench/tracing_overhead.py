"""What tracing costs the drain: the in-process drain of bench/profile_drain.py (N no-op
jobs enqueued, the queue resumed, timed until the read model shows all completed), with
tracing off, on with a sampler at 0, and on with the sampler at 1.0 and an exporter that
drops every span (behind the SDK's BatchSpanProcessor, as an OTLP exporter would be),
alternated A B C A B C so that a machine's drift falls on every arm alike.

    python -m bench.tracing_overhead [--jobs 20000] [--rounds 3]

Prints each run and the ratios of the medians (jobs/s on / off); recorded in
docs/performance.md ("Tracing").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
from collections.abc import Sequence
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
        rates: dict[str, list[float]] = {}
        for round_no in range(rounds):
            for arm, make in _arms().items():
                telemetry = make()
                seconds = await drain(mode, env, telemetry=telemetry)
                if telemetry is not None:
                    telemetry.shutdown()
                rates.setdefault(arm, []).append(jobs / seconds)
                print(f"round {round_no + 1} {arm:>22}: {jobs / seconds:8,.0f} jobs/s",
                      flush=True)
    off = statistics.median(rates["off"])
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at the end")
    for arm, values in rates.items():
        median = statistics.median(values)
        print(f"{arm:>22}: median {median:8,.0f} jobs/s, {median / off:.3f} of off")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.rounds))
