"""/api/v1/tasks: enqueue, batch enqueue, look up, list, cancel, requeue."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from jobledger.projections.queries import Queries
from jobledger.schemas import JOBS, Actor, ActorKind, Permission
from jobledger.schemas.api import (
    MAX_BATCH_BODY_BYTES,
    MAX_TASK_BODY_BYTES,
    BatchCreated,
    BatchRequest,
    TaskCreated,
    TaskDetail,
    TaskListQuery,
    TaskRequest,
    TaskSummary,
)
from jobledger.services.handlers.app import App
from jobledger.services.history.asof import Moment
from jobledger.services.node.base import Node
from jobledger.services.write.commands import CancelOutcome
from jobledger.services.write.producer import parse_batch, parse_task

from .asof import AS_OF_ERRORS, AsOfQuery, answer_as_of, as_of_param, moment_of, stamped
from .auth import principal_of
from .body import read_json, receive_json
from .deps import commands, node, queries
from .openapi import (
    APPEND_ERRORS,
    JSON_BODY_ERRORS,
    Asgi,
    Endpoint,
    Reply,
    parse_query,
    routes_of,
)
from .request_id import request_id_of
from .responses import JSON, ApiError, send_json

__all__ = ["actor_of", "endpoints", "routes"]


def actor_of(request: Request) -> Actor:
    return api_actor(request.scope)


def api_actor(scope: Scope) -> Actor:
    """The caller: with auth on, the key it authenticated with (api/auth.py); with auth
    off, the label it gives in the first X-API-Key-Name header (unverified)."""
    principal = principal_of(scope)
    if principal is not None:
        return principal.actor
    if scope["app"].state.security.enabled:  # a PUBLIC route: no key, and no label either
        return _ANONYMOUS
    for name, value in scope["headers"]:
        if name == b"x-api-key-name":
            return Actor(ActorKind.API, value.decode("latin-1"))
    return _ANONYMOUS


_ANONYMOUS = Actor(ActorKind.API, "anonymous")


async def create_task(scope: Scope, receive: Receive, send: Send) -> None:
    """POST /api/v1/tasks, the busiest endpoint, as a plain ASGI handler (no Request, no
    Response): answers once the task is durable and the read model shows it."""
    node: Node = scope["app"].state.node
    received = await receive_json(scope, receive, MAX_TASK_BODY_BYTES)
    task = parse_task(received, node.config.max_payload_depth)
    (outcome,) = await node.commands.enqueue([task], api_actor(scope), wait_visible=True,
                                             request_id=request_id_of(scope))
    body = TaskCreated(task_id=outcome.task_id, status=outcome.status)
    await send_json(send, body, 201 if outcome.created else 200)


async def create_batch(request: Request) -> Response:
    body = await read_json(request, MAX_BATCH_BODY_BYTES)
    batch = parse_batch(body, node(request).config.max_payload_depth)
    outcomes = await commands(request).enqueue(batch.tasks, actor_of(request), batch=True,
                                               request_id=request_id_of(request.scope))
    duplicates = [i for i, o in enumerate(outcomes) if not o.created]
    return JSON(BatchCreated(task_ids=[o.task_id for o in outcomes], duplicates=duplicates), 201)


async def get_task(request: Request) -> Response:
    task_id = request.path_params["task_id"]
    as_of = as_of_param(request)
    if as_of is not None:
        return await _task_as_of(request, task_id, as_of)
    task = await queries(request).task(task_id)
    if task is None:
        raise ApiError(404, "NOT_FOUND", f"no task {task_id}")
    return JSON(in_effect(task, node(request).app))


async def _task_as_of(request: Request, task_id: str, as_of: str) -> Response:
    """The task as it was then, folded from its own events; the position is its
    partition's alone."""
    history = node(request).history
    partition = history.backend.topic(JOBS).partition_for(task_id)
    moment = await moment_of(request, as_of, (JOBS, partition))
    task = await history.task(task_id, moment)
    if task is None:
        raise ApiError(404, "NOT_FOUND", f"no task {task_id} as of {as_of}")
    return stamped(JSON(in_effect(task, node(request).app)), moment)


def in_effect(task: TaskDetail, app: App) -> TaskDetail:
    """The task with the max_retries and timeout_seconds that apply to it (docs/api.md):
    the task's own, else its handler's, else the defaults. Left null only when this
    server does not have the handler (a Kafka API node without --app): then the worker
    that runs it decides."""
    handler = app.handlers.get(task.task_type)
    if handler is not None:
        task.max_retries, task.timeout_seconds = handler.limits(
            task.max_retries, task.timeout_seconds)
    return task


async def list_tasks(request: Request) -> Response:
    query = parse_query(request, _strict_times(request))
    given = {k: v for k, v in msgspec.structs.asdict(query).items() if v is not msgspec.UNSET}
    given.pop("as_of", None)

    async def listed(tasks: Queries, _moment: Moment | None = None) -> list[TaskSummary]:
        after = given.get("starting_after")
        if after is not None and await tasks.job(after) is None:
            raise ApiError(400, "INVALID_ARGUMENT", f"starting_after: no task {after}",
                           "starting_after")
        return await tasks.jobs(**given)

    return await answer_as_of(request, listed, listed)


def _strict_times(request: Request) -> type[TaskListQuery]:
    """TaskListQuery, once the time parameters are checked to be RFC 3339 strings: the
    query's lax conversion (for numbers written as text) would take `0.5` for a Unix time."""
    for name in ("created_after", "created_before"):
        raw = request.query_params.get(name)
        if raw is None:
            continue
        try:
            msgspec.convert(raw, _Moment, strict=True)
        except msgspec.ValidationError:
            raise ApiError(400, "INVALID_ARGUMENT", f"{name} must be a date-time with a "
                           f"timezone (2026-01-31T09:00:00Z), got {raw!r}", name) from None
    return TaskListQuery


_Moment = Annotated[datetime, msgspec.Meta(tz=True)]


async def delete_task(request: Request) -> Response:
    task_id = request.path_params["task_id"]
    await commands(request).cancel(task_id, actor_of(request), running_ok=False,
                                   request_id=request_id_of(request.scope))
    return Response(status_code=204)


async def cancel_task(request: Request) -> Response:
    outcome = await commands(request).cancel(request.path_params["task_id"], actor_of(request),
                                             request_id=request_id_of(request.scope))
    return Response(status_code=204 if outcome is CancelOutcome.CANCELLED else 202)


async def requeue_task(request: Request) -> Response:
    task_id = request.path_params["task_id"]
    status = await commands(request).requeue(task_id, actor_of(request),
                                             request_id=request_id_of(request.scope))
    return JSON(TaskCreated(task_id=task_id, status=status))


_TASK_ID_404 = {404: "no task with that id"}
_ENQUEUE_400 = {400: JSON_BODY_ERRORS[400] + "; UNKNOWN_TASK_TYPE: no handler is known for "
                "the task type (the error lists the known ones)"}
_CONFLICT = "the task's state does not allow it"

endpoints = [
    Endpoint(
        "POST", "/api/v1/tasks", Asgi(create_task), "Enqueue a task", tag="tasks",
        body=TaskRequest,
        replies={201: Reply("enqueued", TaskCreated),
                 200: Reply("the idempotency key names an existing task", TaskCreated)},
        errors={**JSON_BODY_ERRORS, **_ENQUEUE_400,
                422: "schedule_at and delay_seconds together, or schedule_at outside the times "
                "a job can run", **APPEND_ERRORS},
        description="Answers once the log has the task durably and the read model shows it.",
        access=Permission.SUBMIT_TASKS,
    ),
    Endpoint(
        "GET", "/api/v1/tasks", list_tasks, "List tasks, newest first", tag="tasks",
        query=TaskListQuery, replies={200: Reply("task summaries", list[TaskSummary])},
        errors={400: "a bad query parameter (`field` names it); AS_OF_IN_FUTURE: as_of is "
                "after the server's time or past the log's end"},
        access=Permission.READ_TASKS,
    ),
    Endpoint(
        "POST", "/api/v1/tasks/batch", create_batch, "Enqueue up to 1000 tasks, all or none",
        tag="tasks", body=BatchRequest,
        replies={201: Reply("all enqueued, ids in request order", BatchCreated)},
        errors={**JSON_BODY_ERRORS, **_ENQUEUE_400,
                422: "a task that cannot be applied (`field` names it)",
                **APPEND_ERRORS},
        description="One invalid task rejects the batch; `field` names it (tasks[3].priority).",
        access=Permission.SUBMIT_TASKS,
    ),
    Endpoint(
        "GET", "/api/v1/tasks/{task_id}", get_task, "One task", tag="tasks", query=AsOfQuery,
        replies={200: Reply("the task", TaskDetail)}, errors={**_TASK_ID_404, **AS_OF_ERRORS},
        access=Permission.READ_TASKS,
    ),
    Endpoint(
        "DELETE", "/api/v1/tasks/{task_id}", delete_task, "Cancel a waiting task", tag="tasks",
        replies={204: Reply("it was scheduled or pending and is now cancelled")},
        errors={**_TASK_ID_404, 409: f"{_CONFLICT}: it is in progress or finished",
                **APPEND_ERRORS},
        access=Permission.CANCEL_TASKS,
    ),
    Endpoint(
        "POST", "/api/v1/tasks/{task_id}/cancel", cancel_task,
        "Cancel a waiting task, or ask a running one to stop", tag="tasks",
        replies={204: Reply("it was waiting and is now cancelled"),
                 202: Reply("it is running: its handler has been asked to stop")},
        errors={**_TASK_ID_404, 409: f"{_CONFLICT}: it is finished", **APPEND_ERRORS},
        access=Permission.CANCEL_TASKS,
    ),
    Endpoint(
        "POST", "/api/v1/tasks/{task_id}/requeue", requeue_task, "Start a finished task over",
        tag="tasks", replies={200: Reply("pending again", TaskCreated)},
        errors={**_TASK_ID_404, 409: f"{_CONFLICT}: it has not finished", **APPEND_ERRORS},
        access=Permission.CANCEL_TASKS,
    ),
]
routes = routes_of(endpoints)
