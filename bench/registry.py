"""Every workload of the suite: its name (for --only), which systems run it, its metrics
and the issue's targets. Adding a workload is one entry here and one function."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from .env import Sizes
from .kafka_mode import LEASE_SECONDS
from .workloads import (
    asof,
    dashboard,
    failover,
    http_load,
    lag,
    memory,
    query,
    replay,
    shared,
    ws,
    ws_http,
)

Run = Callable[[Any, Any], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Target:
    text: str
    at_least: float | None = None
    below: float | None = None
    times_peer: Mapping[str, float] = field(default_factory=dict)  # jobledger >= k x peer

    def met(self, value: float, peers: Mapping[str, float]) -> bool | None:
        """Whether jobledger's median meets it; None if a peer it is relative to is missing."""
        if self.at_least is not None and value < self.at_least:
            return False
        if self.below is not None and value >= self.below:
            return False
        for peer, times in self.times_peer.items():
            if peer not in peers:
                return None
            if value < times * peers[peer]:
                return False
        return True


@dataclass(frozen=True)
class Metric:
    key: str
    title: str  # formatted with the Sizes, e.g. "{drain_jobs:,}"
    unit: str
    better: str  # "higher" | "lower"
    target: Target | None = None
    missing: str = "n/a: the system cannot do this"  # why a system that ran has no figure


@dataclass(frozen=True)
class Workload:
    name: str
    run: Run
    metrics: tuple[Metric, ...]
    peers: bool  # run by the peers too (else by jobledger's modes only)
    timeout: float = 900.0  # seconds for one run of one system
    judged_on: str | None = None  # the system whose figure the target judges (default: embedded)


def _latency(what: str, target: Target | None = None, key: str = "") -> tuple[Metric, ...]:
    prefix = f"{key}_" if key else ""
    return (Metric(f"{prefix}p50_ms", f"{what}, p50", "ms", "lower"),
            Metric(f"{prefix}p99_ms", f"{what}, p99", "ms", "lower", target))


WORKLOADS = (
    Workload("drain", shared.drain, (
        Metric("jobs_per_s",
               "drain: {drain_jobs:,} no-op jobs already enqueued, one worker process",
               "jobs/s", "higher",
               Target("≥ 4× Celery, ≥ 2× Huey", times_peer={"celery": 4, "huey": 2})),
        Metric("peak_rss_mb", "peak RSS during the drain (largest process)", "MB", "lower"),
    ), peers=True),
    Workload("latency200", partial(shared.latency, rate=200),
             _latency("enqueue→start at 200 jobs/s", Target("< 10 ms", below=10)), peers=True),
    Workload("latency2000", partial(shared.latency, rate=2000, batch=10),
             _latency("enqueue→start at 2,000 jobs/s (10 a call)"), peers=False),
    Workload("enqueue", shared.enqueue, (
        Metric("one_by_one", "enqueue via own client, one job a call", "jobs/s", "higher"),
        Metric("batched", "enqueue via own client, {batch:,} jobs a call", "jobs/s", "higher",
               Target("≥ 50,000", at_least=50_000), missing="n/a: no batch enqueue API"),
    ), peers=True),
    Workload("http", http_load.post_tasks, (
        Metric("req_per_s", "POST /api/v1/tasks, {http_clients} keep-alive clients", "req/s",
               "higher", Target("≥ 5,000", at_least=5_000)),
    ), peers=False),
    Workload("lag200", partial(lag.projection_lag, rate=200),
             _latency("projection lag (append acked→visible) at 200 jobs/s"), peers=False),
    Workload("lag2000", partial(lag.projection_lag, rate=2000),
             _latency("projection lag (append acked→visible) at 2,000 jobs/s"), peers=False),
    Workload("replay", replay.replay, (
        Metric("events_per_s", "replay of {replay_events:,} events into fresh read models",
               "events/s", "higher", Target("≥ 100,000", at_least=100_000)),
    ), peers=False),
    Workload("query", query.query, (
        Metric("get_p50_ms", "GET /api/v1/tasks/{{id}} with {query_tasks:,} tasks, p50",
               "ms", "lower"),
        Metric("get_p99_ms", "GET /api/v1/tasks/{{id}} with {query_tasks:,} tasks, p99",
               "ms", "lower", Target("< 5 ms", below=5)),
        Metric("list_p50_ms", "filtered list of 100 with {query_tasks:,} tasks, p50",
               "ms", "lower"),
        Metric("list_p99_ms", "filtered list of 100 with {query_tasks:,} tasks, p99",
               "ms", "lower", Target("< 20 ms", below=20)),
    ), peers=False),
    Workload("memory", memory.rss_pending, (
        Metric("rss_mb", "server RSS with {pending_jobs:,} pending jobs", "MB", "lower",
               Target("< 200 MB", below=200)),
    ), peers=False),
    Workload("ws_fanout", ws.ws_fanout,
             _latency("WebSocket fan-out to {ws_subscribers:,} subscribers, enqueue→client",
                      Target("< 100 ms", below=100)), peers=False),
    Workload("ws_http", ws_http.ws_http, (
        *_latency("GET /health during a fan-out of {ws_http_jobs:,} tasks to "
                  "{ws_http_subscribers:,} subscribers", Target("< 50 ms", below=50), key="health"),
        *_latency("GET /api/v1/tasks/{{id}} during that fan-out", Target("< 50 ms", below=50),
                  key="get"),
    ), peers=False),
    Workload("asof", asof.asof, (
        *_latency("GET /api/v1/stats?as_of=<random time>, {replay_events:,} events",
                  Target("< 250 ms", below=250), key="stats"),
        *_latency("GET /api/v1/tasks?as_of&status=pending&limit=100", Target("< 250 ms",
                  below=250), key="pending"),
        *_latency("GET /api/v1/tasks/{{id}}?as_of", Target("< 20 ms", below=20), key="task"),
    ), peers=False),
    Workload("dashboard", dashboard.dashboard_burst, (
        Metric("burst_longest_ms", "dashboard: longest main-thread task of 50 ms or more (0: "
               "none) during a burst of {dashboard_jobs:,} jobs (1,000/s)", "ms", "lower",
               Target("< 50 ms", below=50),
               missing="n/a: no /usr/bin/chromium"),
        Metric("burst_long_tasks", "dashboard: tasks of 50 ms or more during that burst",
               "tasks", "lower", missing="n/a: no /usr/bin/chromium"),
        Metric("idle_longest_ms", "dashboard: longest main-thread task, idle page", "ms",
               "lower", missing="n/a: no /usr/bin/chromium"),
        Metric("calibration_ms", "dashboard yardstick: a fixed script on that page (20,000 "
               "rows built, encoded, sorted)", "ms", "lower", missing="n/a: no /usr/bin/chromium"),
    ), peers=False),
    Workload("failover", failover.failover, (
        Metric("p50_s", "failover: SIGKILLed worker's running jobs started elsewhere, p50", "s",
               "lower", missing="n/a: Kafka mode only"),
        Metric("max_s", "failover: SIGKILLed worker's running jobs started elsewhere, all", "s",
               "lower", Target(f"< lease ({LEASE_SECONDS:g} s) + 5 s", below=LEASE_SECONDS + 5),
               missing="n/a: Kafka mode only"),
    ), peers=False, judged_on="jobledger-kafka"),
)

BY_NAME = {w.name: w for w in WORKLOADS}


def title(metric: Metric, sizes: Sizes) -> str:
    return metric.title.format(**vars(sizes))
