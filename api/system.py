"""Health, stats, workers and queues."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobledger.schemas.common import to_ms

from .deps import commands, node, queries
from .responses import JSON
from .tasks import actor_of

MAX_PROJECTION_LAG_MS = 10_000  # /health is degraded beyond this


async def health(request: Request) -> Response:
    n = node(request)
    stats = await queries(request).stats(to_ms(n.clock.now()))
    lag_ms = await n.projection_lag_ms()
    log_ok = n.backend.writer is not None
    crashed = n.crashed()
    healthy = log_ok and not crashed and lag_ms <= MAX_PROJECTION_LAG_MS
    body = {
        "status": "healthy" if healthy else "degraded",
        "is_leader": n.dispatcher is not None,
        "connected_workers": stats["worker_count"],
        "pending_tasks": stats["pending_count"],
        "projection_lag_ms": lag_ms,
        "quarantined_records": await queries(request).quarantined(),
    }
    if crashed:
        body["crashed"] = crashed
    return JSON(body, 200 if healthy else 503)


async def stats(request: Request) -> Response:
    return JSON(await queries(request).stats(to_ms(node(request).clock.now())))


async def workers(request: Request) -> Response:
    return JSON(await queries(request).workers())


async def queues(request: Request) -> Response:
    return JSON(await queries(request).queues())


async def pause_queue(request: Request) -> Response:
    queue = request.path_params["queue"]
    await commands(request).set_paused(queue, True, actor_of(request))
    return JSON({"queue": queue, "paused": True})


async def resume_queue(request: Request) -> Response:
    queue = request.path_params["queue"]
    await commands(request).set_paused(queue, False, actor_of(request))
    return JSON({"queue": queue, "paused": False})


routes = [
    Route("/health", health, methods=["GET"]),
    Route("/api/v1/stats", stats, methods=["GET"]),
    Route("/api/v1/workers", workers, methods=["GET"]),
    Route("/api/v1/queues", queues, methods=["GET"]),
    Route("/api/v1/queues/{queue}/pause", pause_queue, methods=["POST"]),
    Route("/api/v1/queues/{queue}/resume", resume_queue, methods=["POST"]),
]
