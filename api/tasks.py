"""/api/v1/tasks: enqueue, batch enqueue, look up, list, cancel, requeue."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobledger.projections.queries import task_detail
from jobledger.schemas import Actor, ActorKind, JobStatus
from jobledger.schemas.api import BatchCreated, TaskCreated
from jobledger.services.commands import CancelOutcome
from jobledger.services.producer import parse_batch, parse_task

from .deps import commands, queries
from .responses import JSON, ApiError

MAX_LIST = 1000


def actor_of(request: Request) -> Actor:
    return Actor(ActorKind.API, request.headers.get("x-api-key-name", "anonymous"))


async def create_task(request: Request) -> Response:
    task = parse_task(await request.body())
    (outcome,) = await commands(request).enqueue([task], actor_of(request), wait_visible=True)
    body = TaskCreated(task_id=outcome.task_id, status=outcome.status)
    return JSON(body, 201 if outcome.created else 200)


async def create_batch(request: Request) -> Response:
    batch = parse_batch(await request.body())
    outcomes = await commands(request).enqueue(batch.tasks, actor_of(request))
    return JSON(BatchCreated(task_ids=[o.task_id for o in outcomes]), 201)


async def get_task(request: Request) -> Response:
    job = await queries(request).job(request.path_params["task_id"])
    if job is None:
        raise ApiError(404, "NOT_FOUND", f"no task {request.path_params['task_id']}")
    return JSON(task_detail(job))


def _int_param(request: Request, name: str, default: int, maximum: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "INVALID_ARGUMENT", f"{name} must be an integer, got {raw!r}", name) from None
    if value < 0 or (maximum is not None and value > maximum):
        limit = f"0..{maximum}" if maximum is not None else ">= 0"
        raise ApiError(400, "INVALID_ARGUMENT", f"{name} must be {limit}, got {value}", name)
    return value


async def list_tasks(request: Request) -> Response:
    status = request.query_params.get("status")
    if status is not None and status not in JobStatus.__members__.values():
        raise ApiError(400, "INVALID_ARGUMENT", f"unknown status {status!r}", "status")
    rows = await queries(request).jobs(
        status=status, task_type=request.query_params.get("task_type"),
        queue=request.query_params.get("queue"),
        limit=_int_param(request, "limit", 100, MAX_LIST),
        offset=_int_param(request, "offset", 0),
    )
    return JSON(rows)


async def delete_task(request: Request) -> Response:
    await commands(request).cancel(request.path_params["task_id"], actor_of(request), running_ok=False)
    return Response(status_code=204)


async def cancel_task(request: Request) -> Response:
    outcome = await commands(request).cancel(request.path_params["task_id"], actor_of(request))
    return Response(status_code=204 if outcome is CancelOutcome.CANCELLED else 202)


async def requeue_task(request: Request) -> Response:
    task_id = request.path_params["task_id"]
    status = await commands(request).requeue(task_id, actor_of(request))
    return JSON(TaskCreated(task_id=task_id, status=status))


routes = [
    Route("/api/v1/tasks", create_task, methods=["POST"]),
    Route("/api/v1/tasks", list_tasks, methods=["GET"]),
    Route("/api/v1/tasks/batch", create_batch, methods=["POST"]),
    Route("/api/v1/tasks/{task_id}", get_task, methods=["GET"]),
    Route("/api/v1/tasks/{task_id}", delete_task, methods=["DELETE"]),
    Route("/api/v1/tasks/{task_id}/cancel", cancel_task, methods=["POST"]),
    Route("/api/v1/tasks/{task_id}/requeue", requeue_task, methods=["POST"]),
]
