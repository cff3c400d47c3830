"""/api/v1/schedules: list, define, look up, change, remove, pause, resume, run now.

The body is the flat one APScheduler users know (see docs/schedules.md); the answers are
the schedule as the read model has it once the change is applied. Errors use the codes
of that API: INVALID_TRIGGER, JOB_EXISTS, JOB_NOT_FOUND (and INVALID_ARGUMENT for the
job template's fields).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from jobledger.projections.queries import Queries
from jobledger.projections.schedules import ScheduleState
from jobledger.schemas import Permission, ScheduleStatus
from jobledger.schemas.api import MAX_TASK_BODY_BYTES
from jobledger.schemas.schedules import Removed, ScheduleRequest, ScheduleView, Triggered
from jobledger.services.history.asof import Moment
from jobledger.services.schedules.commands import ScheduleCommands, ScheduleError, parse_request

from .asof import AS_OF_ERRORS, AsOfQuery, answer_as_of, as_of_param
from .body import read_json
from .deps import node
from .openapi import APPEND_ERRORS, JSON_BODY_ERRORS, Endpoint, Reply, routes_of
from .request_id import request_id_of
from .responses import JSON, ApiError, valid_utf8
from .tasks import actor_of

Handler = Callable[[Request], Awaitable[Response]]


# The body of a POST, which defines a schedule, and of a PUT, which changes the fields it
# is given of the schedule its path names.
NewSchedule = Annotated[ScheduleRequest, msgspec.Meta(
    extra_json_schema={"required": ["id", "task_type", "trigger"]})]
ScheduleChange = Annotated[ScheduleRequest, msgspec.Meta(
    extra_json_schema={"not": {"required": ["id"], "description": "the path names it"}})]


def _commands(request: Request) -> ScheduleCommands:
    return node(request).schedules


def _answers_schedule_errors(handler: Handler) -> Handler:
    """ScheduleError (services/schedules/commands.py) as the one error shape, with its code."""
    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ScheduleError as exc:
            raise ApiError(exc.status, exc.code, str(exc), exc.field) from None
    return wrapped


async def _body(request: Request) -> ScheduleRequest:
    body = await read_json(request, MAX_TASK_BODY_BYTES)
    return parse_request(body, node(request).config.max_payload_depth)


@_answers_schedule_errors
async def list_schedules(request: Request) -> Response:
    return await answer_as_of(request, lambda q, m: q.schedules(), lambda q: q.schedules())


@_answers_schedule_errors
async def create_schedule(request: Request) -> Response:
    view = await _commands(request).define(await _body(request), actor_of(request),
                                              request_id_of(request.scope))
    return JSON(view, 201)


@_answers_schedule_errors
async def get_schedule(request: Request) -> Response:
    schedule_id = request.path_params["schedule_id"]
    if as_of_param(request) is None:
        return JSON(await _commands(request).view(schedule_id))

    async def then(queries: Queries, _moment: Moment | None = None) -> ScheduleView:
        found = await queries.schedules(schedule_id)
        if not found:
            raise ApiError(404, "JOB_NOT_FOUND", f"no schedule {schedule_id!r} as of then")
        return found[0]

    return await answer_as_of(request, then, then)  # (the live one is answered above)


@_answers_schedule_errors
async def update_schedule(request: Request) -> Response:
    schedule_id = request.path_params["schedule_id"]
    view = await _commands(request).update(schedule_id, await _body(request), actor_of(request),
                                              request_id_of(request.scope))
    return JSON(view)


@_answers_schedule_errors
async def delete_schedule(request: Request) -> Response:
    schedule_id = request.path_params["schedule_id"]
    await _commands(request).remove(schedule_id, actor_of(request),
                                                request_id_of(request.scope))
    return JSON(Removed(id=schedule_id))


@_answers_schedule_errors
async def pause_schedule(request: Request) -> Response:
    schedule_id = request.path_params["schedule_id"]
    return JSON(await _commands(request).pause(schedule_id, actor_of(request),
                                                request_id_of(request.scope)))


@_answers_schedule_errors
async def resume_schedule(request: Request) -> Response:
    schedule_id = request.path_params["schedule_id"]
    return JSON(await _commands(request).resume(schedule_id, actor_of(request),
                                                request_id_of(request.scope)))


@_answers_schedule_errors
async def trigger_schedule(request: Request) -> Response:
    schedule_id = request.path_params["schedule_id"]
    task_id = await _commands(request).trigger(schedule_id, actor_of(request))
    return JSON(Triggered(task_id=task_id, schedule_id=schedule_id), 201)


async def schedule_updates(
    queries: Queries, changed: Iterable[ScheduleState]
) -> list[dict[str, object]]:
    """The WebSocket messages for schedules a projected batch changed (the hub subscribes
    to Projector.schedule_listeners and sends these): the schedule as GET shows it, or
    {"id", "state": "removed"} for a removed one."""
    out: list[dict[str, object]] = []
    for state in changed:
        if state.status == ScheduleStatus.REMOVED:
            out.append({"type": "schedule_update", "schedule": {
                "id": state.schedule_id, "state": ScheduleStatus.REMOVED}})
            continue
        for view in await queries.schedules(state.schedule_id):
            out.append({"type": "schedule_update", "schedule": _builtins(view)})
    return out


def _builtins(view: ScheduleView) -> dict[str, object]:
    """The view as a dict, its payload still raw JSON: decoding it (as this did) raised
    for a payload stored nested too deep or not UTF-8 (docs/reliability.md). The hub
    encodes the message as it is; the payload is made valid UTF-8 for it here."""
    fields = msgspec.structs.asdict(view)
    fields["payload"] = msgspec.Raw(valid_utf8(bytes(view.payload)))
    return fields


_NOT_FOUND = {404: "no schedule with that id (JOB_NOT_FOUND)"}
_INVALID = {**JSON_BODY_ERRORS, 400: "INVALID_TRIGGER: the trigger or timezone cannot fire "
            "as given; INVALID_ARGUMENT: another field is invalid (`field` names it); "
            "UNKNOWN_TASK_TYPE: no handler is known for task_type"}
_ID = "/api/v1/schedules/{schedule_id}"

endpoints = [
    Endpoint("GET", "/api/v1/schedules", list_schedules, "List schedules", tag="schedules",
             query=AsOfQuery,
             replies={200: Reply("every schedule that is not removed, by id", list[ScheduleView])},
             errors=AS_OF_ERRORS, access=Permission.READ_TASKS),
    Endpoint("POST", "/api/v1/schedules", create_schedule, "Define a schedule", tag="schedules",
             body=NewSchedule, replies={201: Reply("defined", ScheduleView)},
             errors={**_INVALID, 409: "a schedule with that id exists (JOB_EXISTS)",
                     **APPEND_ERRORS},
             description="The flat APScheduler body: id, task_type, trigger and the "
             "trigger's own fields at the top level (docs/schedules.md).", access=Permission.ADMIN),
    Endpoint("GET", _ID, get_schedule, "One schedule", tag="schedules", query=AsOfQuery,
             replies={200: Reply("the schedule", ScheduleView)},
             errors={**_NOT_FOUND, **AS_OF_ERRORS},
             access=Permission.READ_TASKS),
    Endpoint("PUT", _ID, update_schedule, "Change some fields of a schedule", tag="schedules",
             body=ScheduleChange, replies={200: Reply("the changed schedule", ScheduleView)},
             errors={**_INVALID, **_NOT_FOUND, **APPEND_ERRORS},
             description="Fields left out keep their value. With `trigger`, the trigger is "
             "replaced by one built from the fields given; without it, the given trigger "
             "fields change the current trigger.", access=Permission.ADMIN),
    Endpoint("DELETE", _ID, delete_schedule, "Remove a schedule", tag="schedules",
             replies={200: Reply("removed", Removed)}, errors={**_NOT_FOUND, **APPEND_ERRORS},
             access=Permission.ADMIN),
    Endpoint("POST", f"{_ID}/pause", pause_schedule, "Pause a schedule", tag="schedules",
             replies={200: Reply("paused: no timed fire until resumed", ScheduleView)},
             errors={**_NOT_FOUND, **APPEND_ERRORS}, access=Permission.ADMIN),
    Endpoint("POST", f"{_ID}/resume", resume_schedule, "Resume a paused schedule",
             tag="schedules", replies={200: Reply("active again", ScheduleView)},
             errors={**_NOT_FOUND, **APPEND_ERRORS},
             description="Fire times that passed while it was paused are not run.",
             access=Permission.ADMIN),
    Endpoint("POST", f"{_ID}/trigger", trigger_schedule, "Run a schedule's job now",
             tag="schedules", replies={201: Reply("enqueued; follow it at /api/v1/tasks/{task_id}",
                                                  Triggered)},
             errors={**_NOT_FOUND, **APPEND_ERRORS}, access=Permission.ADMIN),
]
routes = routes_of(endpoints)
