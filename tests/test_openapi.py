"""/openapi.json and /docs: built from the Endpoint tables and the handlers' msgspec types,
a valid OpenAPI 3.1 document covering every route, and a page that renders it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
from openapi_spec_validator import validate
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobledger.api.app import ENDPOINTS, create_app
from jobledger.api.openapi import Endpoint, Reply, build_spec, routes_of
from jobledger.schemas import Permission
from jobledger.schemas.api import BODY_RULES, MAX_LIST, TaskDetail, TaskListQuery, TaskRequest
from jobledger.services.handlers.app import App
from jobledger.services.node.embedded import EmbeddedNode
from tests.support.api_harness import api_client
from tests.support.harness import NodeFactory

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return build_spec(ENDPOINTS)


@pytest.fixture
async def client(make_node: NodeFactory) -> AsyncIterator[httpx.AsyncClient]:
    node: EmbeddedNode = await make_node(App())
    async with api_client(node) as c:
        yield c


def test_the_document_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"] == "3.1.0"
    validate(spec)  # raises with the first violation


def test_every_route_of_the_app_is_documented_and_every_operation_is_served() -> None:
    app = create_app(lambda: None)  # type: ignore[arg-type, return-value]
    served = {
        (method, re.sub(r"{(\w+):\w+}", r"{\1}", route.path))
        for route in app.routes if isinstance(route, Route)
        for method in (route.methods or ()) - {"HEAD"}
    }
    spec = app.state.openapi
    documented = {(m.upper(), path) for path, ops in spec["paths"].items() for m in ops}
    assert served - documented == set(), "routes missing from /openapi.json: add Endpoints"
    with_handler = {(e.method, re.sub(r"{(\w+):\w+}", r"{\1}", e.path))
                    for e in ENDPOINTS if e.handler is not None}
    assert with_handler <= served


def test_bodies_and_answers_are_the_handlers_msgspec_types(spec: dict[str, Any]) -> None:
    _, expected = msgspec.json.schema_components(
        [TaskRequest, TaskDetail], ref_template="#/components/schemas/{name}")
    components = spec["components"]["schemas"]
    # With the rules msgspec cannot say of one field (schemas/api.py, BODY_RULES).
    assert components["TaskRequest"] == {**expected["TaskRequest"], **BODY_RULES["TaskRequest"]}
    assert components["TaskDetail"] == expected["TaskDetail"]
    create = spec["paths"]["/api/v1/tasks"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TaskRequest"}
    get = spec["paths"]["/api/v1/tasks/{task_id}"]["get"]
    assert get["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TaskDetail"}


def test_every_error_answer_is_an_error_body_and_body_endpoints_document_400_413_415(
    spec: dict[str, Any],
) -> None:
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for status, reply in op["responses"].items():
                if int(status) >= 400 and reply.get("content", {}).get("application/json"):
                    assert reply["content"]["application/json"]["schema"] in (
                        ERROR_REF, {"$ref": "#/components/schemas/Health"}), (method, path, status)
            if "requestBody" in op:
                assert {"400", "413", "415"} <= set(op["responses"]), (method, path)


def test_parameters_come_from_the_path_and_the_query_struct(spec: dict[str, Any]) -> None:
    listing = spec["paths"]["/api/v1/tasks"]["get"]["parameters"]
    assert [p["name"] for p in listing] == list(TaskListQuery.__struct_fields__)
    assert all(p["in"] == "query" and not p["required"] for p in listing)
    limit = next(p for p in listing if p["name"] == "limit")
    assert (limit["schema"]["maximum"], limit["schema"]["default"]) == (MAX_LIST, 100)
    status = next(p for p in listing if p["name"] == "status")
    assert status["schema"]["$ref"] == "#/components/schemas/JobStatus"
    for path, ops in spec["paths"].items():
        for op in ops.values():
            in_path = {p["name"] for p in op.get("parameters", ()) if p["in"] == "path"}
            assert in_path == set(re.findall(r"{(\w+)}", path)), path
    pause = spec["paths"]["/api/v1/queues/{queue}/pause"]["post"]["parameters"]
    assert pause[0]["schema"]["maxLength"] == 200


def test_one_endpoint_entry_gives_both_the_route_and_the_operation() -> None:
    class Query(msgspec.Struct):
        since: int = 0

    class Thing(msgspec.Struct):
        name: str

    async def get_thing(request: Request) -> Response:
        return Response()

    entry = Endpoint("GET", "/things/{thing_id}", get_thing, "A thing", query=Query,
                     replies={200: Reply("the thing", Thing)}, errors={404: "no such thing"},
                     access=Permission.READ_TASKS)
    [route] = routes_of([entry])
    assert isinstance(route, Route) and route.path == "/things/{thing_id}"
    spec = build_spec([entry])
    validate(spec)
    op = spec["paths"]["/things/{thing_id}"]["get"]
    assert op["operationId"] == "get_thing"
    parameters = [(p["name"], p["in"]) for p in op["parameters"]]
    assert parameters == [("thing_id", "path"), ("since", "query")]
    assert op["responses"]["404"]["content"]["application/json"]["schema"] == ERROR_REF
    assert op["security"] == [{"apiKey": []}]  # and, with auth on, these two answers:
    assert op["responses"]["401"]["content"]["application/json"]["schema"] == ERROR_REF
    assert "read_tasks" in op["responses"]["403"]["description"]
    assert set(spec["components"]["schemas"]) == {"Thing", "ErrorBody"}


async def test_openapi_json_is_served(client: httpx.AsyncClient, spec: dict[str, Any]) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == spec


async def test_the_docs_page_renders_every_operation_and_schema_without_scripts(
    client: httpx.AsyncClient, spec: dict[str, Any]
) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "<script" not in page
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert f"id='op-{op['operationId']}'" in page
            assert f"{method.upper()}</span> <span class='path'>{path}" in page
    for name in spec["components"]["schemas"]:
        assert f"id='schema-{name}'" in page
    assert "integer (&gt;= 0, &lt;= 255)" in page  # priority, escaped
    assert "other fields are refused" in page  # TaskRequest forbids unknown fields


async def test_the_root_redirects_to_the_dashboard(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert (response.status_code, response.headers["location"]) == (307, "/dashboard")
    assert (await client.get("/", follow_redirects=True)).url.path == "/dashboard"


@pytest.mark.parametrize("allow_unknown", [False, True])
async def test_the_served_document_names_the_task_types_the_server_accepts(
    make_node: NodeFactory, allow_unknown: bool,
) -> None:
    app = App()
    app.job("resize")(lambda ctx, payload: None)
    app.job("email")(lambda ctx, payload: None)
    node = await make_node(app, allow_unknown_task_types=allow_unknown)
    async with api_client(node) as client:
        served = (await client.get("/openapi.json")).json()
        page = (await client.get("/docs")).text
    validate(served)
    for body in ("TaskRequest", "ScheduleRequest"):
        task_type = served["components"]["schemas"][body]["properties"]["task_type"]
        assert task_type.get("enum") == (None if allow_unknown else ["email", "resize"])
    assert ("one of <code>email</code>, <code>resize</code>" in page) is not allow_unknown
