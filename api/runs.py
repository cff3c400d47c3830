"""A task's audit trail and its runs: /api/v1/tasks/{id}/history, /api/v1/tasks/{id}/runs,
/api/v1/runs and /api/v1/runs/{run_id}."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobledger.schemas import JOBS, Envelope, decode
from jobledger.schemas.api import HistoryEntry
from jobledger.schemas.common import iso_ms, to_ms
from jobledger.schemas.lifecycle import RunStatus
from jobledger.services.log import Log

from .deps import node, queries
from .responses import JSON, ApiError
from .tasks import MAX_LIST, _int_param

_json = msgspec.json.Encoder()


async def task_history(request: Request) -> Response:
    task_id = request.path_params["task_id"]
    positions = await queries(request).event_positions(task_id)
    if not positions:
        raise ApiError(404, "NOT_FOUND", f"no task {task_id}")
    envs = await _read_events(node(request).backend.topic(JOBS), positions)
    return JSON([_history_entry(env) for env in envs])


async def _read_events(log: Log, positions: list[tuple[int, int]]) -> list[Envelope]:
    """The records at these positions (one partition, ascending offsets), read in runs of
    consecutive offsets: an audit trail is a rare read, but a job's events often sit
    back to back."""
    envs: list[Envelope] = []
    i = 0
    while i < len(positions):
        partition, first = positions[i]
        j = i + 1
        while j < len(positions) and positions[j][1] == positions[j - 1][1] + 1:
            j += 1
        for rec in await log.read(partition, first, limit=j - i):
            envs.append(decode(rec.value, rec.partition, rec.offset))
        i = j
    return envs


def _history_entry(env: Envelope) -> HistoryEntry:
    event = env.event
    worker_id = getattr(event, "worker_id", None)
    if worker_id is None and env.actor.kind == "worker":
        worker_id = env.actor.id
    return HistoryEntry(
        event_id=env.id, type=env.type, time=iso_ms(to_ms(env.time)) or "",
        partition=env.partition, offset=env.offset, attempt=getattr(event, "attempt", None),
        worker_id=worker_id, actor=msgspec.to_builtins(env.actor),
        causation_id=env.causation_id, correlation_id=env.correlation_id,
        event=msgspec.Raw(_json.encode(event)),
    )


async def task_runs(request: Request) -> Response:
    task_id = request.path_params["task_id"]
    q = queries(request)
    runs = await q.runs_of(task_id)
    if not runs and await q.job(task_id) is None:
        raise ApiError(404, "NOT_FOUND", f"no task {task_id}")
    return JSON(runs)


async def list_runs(request: Request) -> Response:
    status = request.query_params.get("status")
    if status is not None:
        status = status.upper()
        if status not in RunStatus.__members__:
            allowed = ", ".join(RunStatus.__members__)
            raise ApiError(400, "INVALID_ARGUMENT", f"status must be one of {allowed}", "status")
    runs = await queries(request).runs(
        task_type=request.query_params.get("task_type"), status=status,
        limit=_int_param(request, "limit", 100, MAX_LIST),
    )
    return JSON(runs)


async def get_run(request: Request) -> Response:
    run = await queries(request).run(request.path_params["run_id"])
    if run is None:
        raise ApiError(404, "NOT_FOUND", f"no run {request.path_params['run_id']}")
    return JSON(run)


routes = [
    Route("/api/v1/tasks/{task_id}/history", task_history, methods=["GET"]),
    Route("/api/v1/tasks/{task_id}/runs", task_runs, methods=["GET"]),
    Route("/api/v1/runs", list_runs, methods=["GET"]),
    Route("/api/v1/runs/{run_id}", get_run, methods=["GET"]),
]
