"""A task's audit trail and its runs: /api/v1/tasks/{id}/history, /api/v1/tasks/{id}/runs,
/api/v1/runs and /api/v1/runs/{run_id}."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from jobledger.schemas import JOBS, Envelope, Permission, decode
from jobledger.schemas.api import (
    ActorView,
    HistoryEntry,
    LogSpan,
    RunDetail,
    RunListQuery,
    RunSummary,
)
from jobledger.schemas.common import iso_ms, to_ms
from jobledger.services.log.protocol import Log

from .deps import node, queries
from .openapi import Endpoint, Reply, parse_query, routes_of
from .responses import JSON, ApiError

_json = msgspec.json.Encoder()


async def task_history(request: Request) -> Response:
    task_id = request.path_params["task_id"]
    positions = await queries(request).event_positions(task_id)
    if not positions:
        raise ApiError(404, "NOT_FOUND", f"no task {task_id}")
    kept = [p for p in positions if _kept(request, p)]
    envs = await _read_events(node(request).backend.topic(JOBS), kept)
    response = JSON([_history_entry(env) for env in envs])
    if len(kept) < len(positions):  # its first events went with a cut of the log
        retained = node(request).history.retained
        response.headers["X-History-Events-Cut"] = str(len(positions) - len(kept))
        response.headers["X-History-Retained-From"] = iso_ms(retained.time_ms) or ""
    return response


def _kept(request: Request, position: tuple[int, int]) -> bool:
    """Is the jobs record at position still in the log (not cut by --log-retention)?"""
    partition, offset = position
    return offset >= node(request).history.retained.starts.get(JOBS, {}).get(partition, 0)


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
        worker_id=worker_id, actor=ActorView.of(env.actor),
        causation_id=env.causation_id, correlation_id=env.correlation_id,
        event=msgspec.Raw(_json.encode(event)),
    )


MAX_CAUSES = 1_000  # events a causes walk returns at most: a chain a producer made loop ends


async def event_causes(request: Request) -> Response:
    event_id = request.path_params["event_id"]
    q, log = queries(request), node(request).backend.topic(JOBS)
    position = await q.event_position(event_id)
    if position is None:
        raise ApiError(404, "NOT_FOUND", f"no job event {event_id}")
    chain: list[HistoryEntry] = []
    seen = {event_id}
    while position is not None and _kept(request, position) and len(chain) < MAX_CAUSES:
        (env,) = await _read_events(log, [position])
        chain.append(_history_entry(env))
        cause = env.causation_id
        if cause is None or cause in seen:
            break
        seen.add(cause)
        position = await q.event_position(cause)
    return JSON(chain)


async def log_span(request: Request) -> Response:
    n = node(request)
    first = await n.history.first_time_ms()
    return JSON(LogSpan(first_time=None if first is None else iso_ms(first),
                        now=iso_ms(to_ms(n.clock.now())) or ""))


async def task_runs(request: Request) -> Response:
    task_id = request.path_params["task_id"]
    q = queries(request)
    runs = await q.runs_of(task_id)
    if not runs and await q.job(task_id) is None:
        raise ApiError(404, "NOT_FOUND", f"no task {task_id}")
    return JSON(runs)


async def list_runs(request: Request) -> Response:
    query = parse_query(request, RunListQuery)
    given = {k: v for k, v in msgspec.structs.asdict(query).items() if v is not msgspec.UNSET}
    return JSON(await queries(request).runs(**given))


async def get_run(request: Request) -> Response:
    run = await queries(request).run(request.path_params["run_id"])
    if run is None:
        raise ApiError(404, "NOT_FOUND", f"no run {request.path_params['run_id']}")
    return JSON(run)


_TASK_ID_404 = {404: "no task with that id"}

endpoints = [
    Endpoint(
        "GET", "/api/v1/tasks/{task_id}/history", task_history, "A task's audit trail",
        tag="tasks", replies={200: Reply("its events in log order", list[HistoryEntry])},
        errors=_TASK_ID_404,
        description="Every event of the task on the jobs topic, read back from the log: the "
        "ones that changed nothing (a superseded attempt's late heartbeat) too.",
        access=Permission.READ_TASKS,
    ),
    Endpoint(
        "GET", "/api/v1/events/{event_id}/causes", event_causes,
        "The chain of causes of a job event, back to its origin", tag="tasks",
        replies={200: Reply("the event, then its cause, its cause's cause and so on",
                            list[HistoryEntry])},
        errors={404: "no job event with that id"},
        description="Follows causation_id from event to event (across jobs: a job enqueued "
        "by a handler is caused by its parent's pick) until an event has none, or its cause "
        "is no job event: then the last entry's causation_id names the request (X-Request-ID) "
        "or schedule fire that started it. At most 1000 entries.",
        access=Permission.READ_TASKS,
    ),
    Endpoint(
        "GET", "/api/v1/history/span", log_span, "The moments an as_of can name", tag="tasks",
        replies={200: Reply("the oldest record's time and the server's time", LogSpan)},
        description="From the log's oldest record still kept to the server's time now: the "
        "span of the dashboard's time slider (docs/dashboard.md).",
        access=Permission.READ_TASKS,
    ),
    Endpoint(
        "GET", "/api/v1/tasks/{task_id}/runs", task_runs, "A task's runs, one per attempt",
        tag="runs", replies={200: Reply("run summaries in attempt order", list[RunSummary])},
        errors=_TASK_ID_404,
        access=Permission.READ_TASKS,
    ),
    Endpoint(
        "GET", "/api/v1/runs", list_runs, "Runs, newest first", tag="runs",
        query=RunListQuery, replies={200: Reply("run summaries", list[RunSummary])},
        errors={400: "a bad query parameter (`field` names it)"},
        access=Permission.READ_TASKS,
    ),
    Endpoint(
        "GET", "/api/v1/runs/{run_id}", get_run, "One run with its log lines", tag="runs",
        replies={200: Reply("the run", RunDetail)}, errors={404: "no run with that id"},
        description="run_id is <task_id>.<attempt>.",
        access=Permission.READ_TASKS,
    ),
]
routes = routes_of(endpoints)
