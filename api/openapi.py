"""The API's routes and its OpenAPI 3.1 description, both from one declarative table.

Each route module exports `endpoints`: one `Endpoint` per method and path, naming the
handler and the msgspec types it reads and writes. The same entry gives the Starlette
route (`routes_of`) and the operation in GET /openapi.json (`build_spec`), so what is
served and what is documented cannot drift apart; tests/test_openapi.py checks that
every route of the app is documented and that the spec validates.

To add an endpoint, add one entry to the `endpoints` of its module:

    endpoints = [
        Endpoint("GET", "/api/v1/runs/{run_id}", get_run, "One run with its logs",
                 replies={200: Reply("the run", RunDetail)},
                 errors={404: "no run with that id"}, access=Permission.READ_TASKS),
    ]
    routes = routes_of(endpoints)

and, for a new module, list its `endpoints` in `ENDPOINTS` of api/app.py. Path
parameters are read from the path (strings unless `path_params` names a Struct giving
their constraints); query parameters are the fields of the `query` Struct the handler
parses them with (`parse_query`); `body` is the request body's type (application/json);
`replies` are the success answers and `errors` the error answers (always an `ErrorBody`);
`access` is what a caller needs with auth on (a Permission, or PUBLIC: api/auth.py), and
an entry without one is refused when the routes are built.
An entry with `handler=None` is documented only: use it for a route the module adds to
the app itself (a WebSocket route: describe its upgrade as a GET).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from jobledger.schemas.api import BODY_RULES, ErrorBody

from .auth import PUBLIC, REGISTRATION, Access, AsgiFunction, Handler, guard, guard_asgi
from .responses import JSON, ApiError

Q = TypeVar("Q", bound=msgspec.Struct)

_PATH_PARAM = re.compile(r"{(\w+)(:\w+)?}")
_REF = "#/components/schemas/{name}"

# Error answers most endpoints share; merge them into an entry's `errors`.
JSON_BODY_ERRORS: Mapping[int, str] = {
    400: "the body is not JSON, or a field is missing, unknown or invalid (`field` names it)",
    413: "the body (or a payload) is over its limit",
    415: "the Content-Type is not application/json",
}
# Answered with auth on by every route that is not PUBLIC (api/auth.py).
AUTH_ERRORS: Mapping[int, str] = {
    401: "no credential, or one that is unknown, revoked or expired (UNAUTHORIZED)",
    403: "the API key or user lacks the {} permission (FORBIDDEN)",
    429: "the API key or user has spent its rate limit; Retry-After says when to retry "
         "(RATE_LIMITED)",
}
BEARER = "apiKey"
SECURITY_SCHEMES = {BEARER: {
    "type": "http", "scheme": "bearer",
    "description": "an API key (jl_...) or a sign-in token (POST /auth/login), needed when "
    "the server runs with auth on"}}
APPEND_ERRORS: Mapping[int, str] = {
    503: "the log refused the append; nothing was written",
    504: "the append's outcome is unknown; retry with the same idempotency_key",
}


class Asgi:
    """A handler written as a plain ASGI app, for the busiest endpoints: Starlette calls it
    without building a Request or a Response (a bare function would be taken for a
    request -> response handler). Its exceptions still reach the app's handlers."""

    def __init__(self, app: AsgiFunction):
        self.app = app
        self.__name__ = app.__name__

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


@dataclass(frozen=True)
class Reply:
    """A success answer: its description and body type (None: no body)."""

    description: str
    body: Any = None
    media_type: str = "application/json"


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler | Asgi | None
    summary: str
    replies: Mapping[int, Reply]
    errors: Mapping[int, str] = field(default_factory=dict)
    body: Any = None
    query: type | None = None
    path_params: type | None = None
    tag: str = ""
    description: str = ""
    operation_id: str = ""
    # What a caller needs when auth is on (api/auth.py): a Permission, or PUBLIC. None is
    # no declaration, and such a route is refused: it is never served unchecked.
    access: Access | None = None

    def route(self) -> Route:
        return Route(self.path, self.served(), methods=[self.method])

    def served(self) -> Handler | Asgi:
        """The handler with its access check in front."""
        assert self.handler is not None, f"{self.method} {self.path} is documented only"
        if self.access is None:
            raise ValueError(f"{self.method} {self.path} declares no access: give its Endpoint "
                             "a Permission, or PUBLIC (api/auth.py)")
        if isinstance(self.handler, Asgi):
            return Asgi(guard_asgi(self.handler.app, self.access))
        return guard(self.handler, self.access)

    @property
    def id(self) -> str:
        if self.operation_id:
            return self.operation_id
        assert self.handler is not None, f"{self.method} {self.path} needs an operation_id"
        return self.handler.__name__


def routes_of(endpoints: list[Endpoint]) -> list[BaseRoute]:
    return [e.route() for e in endpoints if e.handler is not None]


def parse_query(request: Request, shape: type[Q]) -> Q:
    """The request's query parameters as `shape` (a Struct); 400 naming a bad one.
    Unknown parameters are ignored; a repeated one counts once (its last value). A
    parameter whose values are an enum's (a status) is matched in any case: task statuses
    are lowercase and run statuses UPPERCASE, and a caller should not have to remember
    which; a value that matches none is a 400 listing them."""
    params = dict(request.query_params)
    for name, values in _choices_of(shape).items():
        if name in params:
            params[name] = _choice(name, params[name], values)
    try:
        return msgspec.convert(params, shape, strict=False)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "INVALID_ARGUMENT", str(exc), _param_of(str(exc))) from None


@functools.cache
def _choices_of(shape: type) -> dict[str, dict[str, str]]:
    """For each field of the Struct `shape` that takes one of a set of strings (an enum or
    a Literal): its values by their casefold."""
    info = msgspec.inspect.type_info(shape)
    assert isinstance(info, msgspec.inspect.StructType), shape
    choices = {}
    for f in info.fields:
        values = _string_values(f.type)
        if values:
            choices[f.encode_name] = {v.casefold(): v for v in values}
    return choices


def _string_values(t: msgspec.inspect.Type) -> list[str]:
    if isinstance(t, msgspec.inspect.Metadata):
        return _string_values(t.type)
    if isinstance(t, msgspec.inspect.UnionType):
        return [v for member in t.types for v in _string_values(member)]
    if isinstance(t, msgspec.inspect.EnumType):
        return [m.value for m in t.cls if isinstance(m.value, str)]
    if isinstance(t, msgspec.inspect.LiteralType):
        return [v for v in t.values if isinstance(v, str)]
    return []


def _choice(name: str, given: str, values: Mapping[str, str]) -> str:
    """The value `given` names, in any case; 400 listing the values when none."""
    value = values.get(given.casefold())
    if value is None:
        listed = ", ".join(values.values())
        raise ApiError(400, "INVALID_ARGUMENT",
                       f"{name} {given!r} is not one of: {listed} (in any case)", name)
    return value


def _param_of(message: str) -> str | None:
    match = re.search(r"at `\$\.(\w+)`|field `(\w+)`", message)
    return (match.group(1) or match.group(2)) if match else None


def build_spec(endpoints: list[Endpoint], title: str = "jobledger") -> dict[str, Any]:
    """The OpenAPI 3.1 document of these endpoints, schemas under components/schemas."""
    param_types = {t for e in endpoints for t in (e.query, e.path_params) if t is not None}
    types = _types_of(endpoints)
    schemas, components = msgspec.json.schema_components(types, ref_template=_REF)
    for name, rules in BODY_RULES.items():  # what msgspec cannot say of a field
        if name in components:
            components[name] = {**components[name], **rules}
    schema_of = dict(zip(types, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        path = _PATH_PARAM.sub(r"{\1}", e.path)
        paths.setdefault(path, {})[e.method.lower()] = _operation(e, schema_of, components)
    for t in param_types:  # described as parameters, not as schemas of their own
        components.pop(t.__name__, None)
    tags = sorted({e.tag for e in endpoints if e.tag})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": _version(),
            "description": "An event-sourced job orchestrator. Every error answers an "
            "ErrorBody: {\"error\", \"code\", \"field\", \"details\"}.",
        },
        "tags": [{"name": t} for t in tags],
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": SECURITY_SCHEMES},
    }


def _types_of(endpoints: list[Endpoint]) -> list[Any]:
    found: list[Any] = [ErrorBody]
    for e in endpoints:
        candidates = [e.body, e.query, e.path_params, *(r.body for r in e.replies.values())]
        found.extend(t for t in candidates if t is not None and t not in found)
    return found


def _operation(
    e: Endpoint, schema_of: dict[Any, Any], components: dict[str, Any]
) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": e.id, "summary": e.summary}
    if e.description:
        op["description"] = e.description
    if e.tag:
        op["tags"] = [e.tag]
    parameters = _path_parameters(e, components) + _query_parameters(e, components)
    if parameters:
        op["parameters"] = parameters
    if e.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema_of[e.body]}},
        }
    responses: dict[str, Any] = {}
    for status, reply in sorted(e.replies.items()):
        responses[str(status)] = {"description": reply.description}
        if reply.body is not None:
            content = {reply.media_type: {"schema": schema_of[reply.body]}}
            responses[str(status)]["content"] = content
    error = {"schema": schema_of[ErrorBody]}
    errors = dict(e.errors)
    # A documented-only route (the WebSocket) refuses by its own means (a close code): its
    # description says how, and a plain HTTP request to it answers as without auth.
    if e.access not in (None, PUBLIC) and e.handler is not None:
        op["security"] = [{BEARER: []}]
        needs = "admin" if e.access == REGISTRATION else e.access  # without open registration
        errors |= {**AUTH_ERRORS, 403: AUTH_ERRORS[403].format(needs)}
    for status, when in sorted(errors.items()):
        responses[str(status)] = {"description": when, "content": {"application/json": error}}
    op["responses"] = responses
    return op


def _properties(shape: type | None, components: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    if shape is None:
        return {}, set()
    schema = components[shape.__name__]
    return schema.get("properties", {}), set(schema.get("required", ()))


def _path_parameters(e: Endpoint, components: dict[str, Any]) -> list[dict[str, Any]]:
    props, _ = _properties(e.path_params, components)
    return [
        {"name": name, "in": "path", "required": True,
         "schema": props.get(name, {"type": "string", "minLength": 1})}
        for name, _convertor in _PATH_PARAM.findall(e.path)
    ]


def _query_parameters(e: Endpoint, components: dict[str, Any]) -> list[dict[str, Any]]:
    props, required = _properties(e.query, components)
    params = []
    for name, schema in props.items():
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required,
                                 "schema": _non_null(schema)}
        description = param["schema"].get("description")
        if description:
            param["description"] = description
        params.append(param)
    return params


def _non_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent rather than null: `X | None = None` documents as X."""
    options = schema.get("anyOf")
    if options is None:
        return schema
    kept = [o for o in options if o != {"type": "null"}]
    rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
    return {**kept[0], **rest} if len(kept) == 1 else {**rest, "anyOf": kept}


def _version() -> str:
    try:
        return metadata.version("jobledger")
    except metadata.PackageNotFoundError:
        return "0.0.0"


async def openapi_json(request: Request) -> Response:
    return JSON(await served_spec(request))


# The request bodies whose task_type must be a known one (api/tasks.py, api/schedules.py).
_TASK_TYPE_BODIES = ("TaskRequest", "ScheduleRequest")


async def served_spec(request: Request) -> dict[str, Any]:
    """The document, with the task types this server accepts right now as the `enum` of
    every task_type it takes: a task of another type is refused (UNKNOWN_TASK_TYPE), so
    the document says so. In Kafka mode the list grows as workers declare types. Unchanged
    under --allow-unknown-task-types, or while no type is known."""
    spec: dict[str, Any] = request.app.state.openapi
    known = await request.app.state.node.commands.task_types.accepted()
    return with_task_types(spec, known) if known else spec


def with_task_types(spec: dict[str, Any], known: list[str]) -> dict[str, Any]:
    """A copy of spec (sharing what it does not change) whose task_type fields are one of
    `known`."""
    schemas = dict(spec["components"]["schemas"])
    for name in _TASK_TYPE_BODIES:
        properties = dict(schemas[name]["properties"])
        properties["task_type"] = {**properties["task_type"], "enum": known}
        schemas[name] = {**schemas[name], "properties": properties}
    return {**spec, "components": {**spec["components"], "schemas": schemas}}


endpoints = [
    Endpoint("GET", "/openapi.json", openapi_json, "This OpenAPI 3.1 document",
             replies={200: Reply("the document", dict[str, Any])}, tag="docs", access=PUBLIC),
]
routes = routes_of(endpoints)
