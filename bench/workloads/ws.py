"""WebSocket fan-out: 1,000 subscribers, p99 append-to-client latency. NOT YET MEASURED:
the WebSocket hub (api/ws.py) is being built. To fill it in, replace the body of
ws_fanout; the registry entry (bench/registry.py, "ws_fanout") already names its metrics.

Intended measurement: start `system.mode.serve(env, where, workers=False)`; open 1,000
subscriptions to the hub (the `websockets` package, one asyncio task each, from this
process; say the client's CPU share); enqueue at a steady rate with bench.measure.steady,
noting time.monotonic() per enqueued job id when the append is acknowledged; each
subscriber notes when the message about that job arrives; return
{"p50_ms": ..., "p99_ms": ..., "details": {...}} over all (subscriber, job) pairs."""

from __future__ import annotations

from typing import Any

from bench.env import Env
from bench.ledger import JobledgerSystem
from bench.system import NotMeasured


async def ws_fanout(system: JobledgerSystem, env: Env) -> dict[str, Any]:
    raise NotMeasured("not yet measured: the WebSocket hub is being built")
