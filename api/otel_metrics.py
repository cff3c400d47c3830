"""The instruments of /metrics through the OpenTelemetry metrics SDK, exported over OTLP
when telemetry is on (docs/observability.md): queue depth, workers, projection lag, job
durations, job outcomes and log append latency.

Histograms and counters are recorded as things happen, where the Prometheus ones are
(api/metrics.py). The gauges are read from the read models by a task of the app's every
export interval (OTEL_METRIC_EXPORT_INTERVAL), since the SDK's callbacks cannot await.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import NamedTuple

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from jobledger.services.runtime.supervise import spawn

log = logging.getLogger("jobledger.metrics")
JOB_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400)


class Gauges(NamedTuple):
    pending: int
    workers: int
    lag_seconds: float


class OtelMetrics:
    def __init__(self, meter: Meter):
        self.gauges = Gauges(0, 0, 0.0)
        self.job_duration = meter.create_histogram(
            "jobledger.job.duration", "s", "Duration of runs that ended, by outcome",
            explicit_bucket_boundaries_advisory=JOB_BUCKETS)
        self.outcomes = meter.create_counter(
            "jobledger.job.outcomes", "{run}", "Runs that ended, by task type and outcome")
        self.append_duration = meter.create_histogram(
            "jobledger.log.append.duration", "s", "Appends to the log by this node, until durable")
        meter.create_observable_gauge("jobledger.queue.depth", [self._pending], "{task}",
                                      "Tasks ready to run")
        meter.create_observable_gauge("jobledger.workers.connected", [self._workers],
                                      "{worker}", "Workers alive")
        meter.create_observable_gauge("jobledger.projection.lag", [self._lag], "s",
                                      "Age of the oldest record the projections have not applied")

    def ended(self, task_type: str, outcome: str, seconds: float) -> None:
        attributes = {"task_type": task_type, "outcome": outcome}
        self.job_duration.record(seconds, attributes)
        self.outcomes.add(1, attributes)

    def _pending(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.gauges.pending)]

    def _workers(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.gauges.workers)]

    def _lag(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.gauges.lag_seconds)]


def export_interval() -> float:
    """Seconds between exports (OTEL_METRIC_EXPORT_INTERVAL, ms; the SDK's 60 s default)."""
    try:
        return max(0.1, float(os.environ.get("OTEL_METRIC_EXPORT_INTERVAL", 60_000)) / 1000)
    except ValueError:
        return 60.0  # the SDK says what is wrong with it, and uses its default too


def refreshing(refresh: Callable[[], Awaitable[None]], every: float) -> asyncio.Task[None]:
    """A task reading the gauges every `every` seconds until cancelled."""
    async def run() -> None:
        while True:
            try:
                await refresh()
            except Exception:  # a read model busy or closing: the next round reads again
                log.debug("reading the gauges failed", exc_info=True)
            await asyncio.sleep(every)

    return spawn(run(), "otel-gauges")
