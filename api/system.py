"""Health, stats, workers and queues."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from jobledger.schemas import Permission
from jobledger.schemas.api import (
    ClusterInfo,
    Health,
    QueueInfo,
    QueuePath,
    QueueToggled,
    Stats,
    WorkerInfo,
)
from jobledger.schemas.common import to_ms
from jobledger.services.node.base import Node

from .asof import AS_OF_ERRORS, AsOfQuery, answer_as_of
from .auth import PUBLIC
from .deps import commands, node, queries
from .openapi import APPEND_ERRORS, Endpoint, Reply, routes_of
from .request_id import request_id_of
from .responses import JSON, ApiError
from .tasks import actor_of


async def health(request: Request) -> Response:
    n = node(request)
    stats = await queries(request).stats(to_ms(n.clock.now()))
    lag_ms = await n.projection_lag_ms()
    crashed = n.crashed()
    reasons = degraded_because(n, lag_ms, crashed)
    healthy = not reasons
    body = Health(
        status="healthy" if healthy else "degraded",
        is_leader=n.is_leader(),
        connected_workers=stats.worker_count,
        pending_tasks=stats.pending_count,
        projection_lag_ms=lag_ms,
        quarantined_records=await queries(request).quarantined(),
        crashed=crashed,
        reason="; ".join(reasons) or None,
    )
    return JSON(body, 200 if healthy else 503)


def degraded_because(n: Node, lag_ms: int, crashed: list[str]) -> list[str]:
    """Every reason the node is degraded, for people; none when it is healthy."""
    reasons = [] if n.log_writable() else ["log: not open for writing"]
    reasons += n.faults()
    reasons += [f"background task {name} crashed" for name in crashed]
    if lag_ms > n.config.max_projection_lag_ms:
        reasons.append(f"projections: {lag_ms:,} ms behind the log, more than "
                       f"{n.config.max_projection_lag_ms:,}")
    return reasons


async def stats(request: Request) -> Response:
    now = to_ms(node(request).clock.now())
    return await answer_as_of(request, lambda q, m: q.stats(m.time_ms),
                              lambda q: q.stats(now))


async def workers(request: Request) -> Response:
    return await answer_as_of(request, lambda q, m: q.workers(), lambda q: q.workers())


async def queues(request: Request) -> Response:
    return await answer_as_of(request, lambda q, m: q.queues(), lambda q: q.queues())


async def cluster(request: Request) -> Response:
    return JSON(await node(request).cluster())


async def pause_queue(request: Request) -> Response:
    return await _set_paused(request, True)


async def resume_queue(request: Request) -> Response:
    return await _set_paused(request, False)


async def _set_paused(request: Request, paused: bool) -> Response:
    queue = _queue_of(request)
    await commands(request).set_paused(queue, paused, actor_of(request),
                                       request_id_of(request.scope))
    return JSON(QueueToggled(queue=queue, paused=paused))


def _queue_of(request: Request) -> str:
    try:
        return msgspec.convert(request.path_params, QueuePath).queue
    except msgspec.ValidationError as exc:
        raise ApiError(400, "INVALID_ARGUMENT", str(exc), "queue") from None


_QUEUE_ERRORS = {400: "the queue name is longer than 200 characters", **APPEND_ERRORS}

endpoints = [
    Endpoint(
        "GET", "/health", health, "Liveness and projection lag", tag="system",
        replies={200: Reply("healthy", Health),
                 503: Reply("degraded: the log is not writable, the projections lag beyond "
                            "the bound, or a background task crashed", Health)},
        access=PUBLIC,
    ),
    Endpoint("GET", "/api/v1/stats", stats, "Counts, queue depth, last-hour runs", tag="system",
             query=AsOfQuery, replies={200: Reply("the stats", Stats)}, errors=AS_OF_ERRORS,
             access=Permission.READ_TASKS),
    Endpoint("GET", "/api/v1/workers", workers, "Workers and their load", tag="system",
             query=AsOfQuery,
             replies={200: Reply("every worker ever registered", list[WorkerInfo])},
             errors=AS_OF_ERRORS, access=Permission.READ_TASKS),
    Endpoint("GET", "/api/v1/cluster", cluster, "Partitions: owner, end and this node's lag",
             tag="system", replies={200: Reply("every partition of every topic", ClusterInfo)},
             access=Permission.READ_TASKS),
    Endpoint("GET", "/api/v1/queues", queues, "Queues: paused, waiting and running counts",
             tag="queues", query=AsOfQuery, replies={200: Reply("the queues", list[QueueInfo])},
             errors=AS_OF_ERRORS, access=Permission.READ_TASKS),
    Endpoint("POST", "/api/v1/queues/{queue}/pause", pause_queue, "Stop picking from a queue",
             tag="queues", path_params=QueuePath,
             replies={200: Reply("paused", QueueToggled)}, errors=_QUEUE_ERRORS,
             access=Permission.ADMIN),
    Endpoint("POST", "/api/v1/queues/{queue}/resume", resume_queue, "Pick from a queue again",
             tag="queues", path_params=QueuePath,
             replies={200: Reply("resumed", QueueToggled)}, errors=_QUEUE_ERRORS,
             access=Permission.ADMIN),
]
routes = routes_of(endpoints)
