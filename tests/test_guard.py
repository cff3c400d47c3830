"""What the API refuses before any route, auth on or off (api/guard.py): Host names not
allowed (DNS rebinding), cross-site requests that change state, bodies over
--max-body-bytes; and CORS, off unless --cors-origin allows an origin."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from jobledger.services.cli.exposure import exposure_notes, exposure_settings
from jobledger.services.cli.main import build_parser
from jobledger.services.node.embedded import EmbeddedNode
from jobledger.services.security.exposure import (
    DEFAULT_MAX_BODY_BYTES,
    ExposureSettings,
    allowed_hosts_of,
)
from tests.support.api_harness import api_client, assert_error, handlers, submit
from tests.support.harness import NodeFactory

EVIL = "http://evil.example"
APP = "https://app.example.com"
LOCAL = frozenset({"localhost", "127.0.0.1", "::1", "test"})


@pytest.fixture
async def node(make_node: NodeFactory) -> EmbeddedNode:
    return await make_node(handlers, concurrency=1)


@pytest.fixture
async def guarded(node: EmbeddedNode) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a server that answers the local names (and `test`, httpx's base URL),
    allows pages of APP, and takes bodies up to 4 KiB."""
    exposure = ExposureSettings(allowed_hosts=LOCAL, cors_origins=(APP,), max_body_bytes=4096)
    async with api_client(node, exposure=exposure) as client:
        yield client


# -- Host names --------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "localhost.evil.example"])
async def test_a_host_not_allowed_is_answered_400_in_the_error_shape(
    guarded: httpx.AsyncClient, host: str,
) -> None:
    for path in ("/health", "/api/v1/tasks", "/docs"):
        error = assert_error(await guarded.get(path, headers={"host": host}), 400,
                             "HOST_NOT_ALLOWED", "host")
        assert "--allowed-hosts" in error["error"]


@pytest.mark.parametrize("host", ["localhost", "localhost:8080", "127.0.0.1:8080",
                                  "[::1]:8080", "LOCALHOST"])
async def test_the_local_names_are_answered_with_or_without_a_port(
    guarded: httpx.AsyncClient, host: str,
) -> None:
    assert (await guarded.get("/health", headers={"host": host})).status_code == 200


def _serve_args(*argv: str) -> ExposureSettings:
    return exposure_settings(build_parser().parse_args(["serve", *argv]))


def test_allowed_hosts_default_to_the_bind_address_and_the_local_names() -> None:
    assert _serve_args().allowed_hosts == {"localhost", "127.0.0.1", "::1"}
    assert _serve_args("--host", "10.0.0.5").allowed_hosts == {
        "localhost", "127.0.0.1", "::1", "10.0.0.5"}
    given = _serve_args("--host", "10.0.0.5", "--allowed-hosts", "jobs.example.com,Jobs.Internal",
                        "--allowed-hosts", "10.0.0.5:8080")
    assert given.allowed_hosts == {"jobs.example.com", "jobs.internal", "10.0.0.5"}


def test_a_wildcard_bind_answers_every_name_with_a_warning_unless_hosts_are_listed() -> None:
    for host in ("0.0.0.0", "::"):
        args = build_parser().parse_args(["serve", "--host", host])
        assert exposure_settings(args).allowed_hosts is None
        (warning,) = exposure_notes(args)
        assert f"--host {host}" in warning and "--allowed-hosts" in warning
    listed = build_parser().parse_args(["serve", "--host", "0.0.0.0",
                                        "--allowed-hosts", "jobs.example.com"])
    assert exposure_settings(listed).allowed_hosts == {"jobs.example.com"}
    assert exposure_notes(listed) == []
    everyone = build_parser().parse_args(["serve", "--host", "0.0.0.0", "--allowed-hosts", "*"])
    assert exposure_settings(everyone).allowed_hosts is None and exposure_notes(everyone) == []
    assert allowed_hosts_of(["*"], "127.0.0.1") is None


@pytest.mark.parametrize("argv, message", [
    (["--allowed-hosts", "http://x.example/"], "not a host name"),
    (["--cors-origin", "*"], "not an origin"),
    (["--cors-origin", "https://app.example.com/path"], "not an origin"),
    (["--max-body-bytes", "10"], "not a number of bytes >= 1024"),
])
def test_bad_flags_are_one_line_naming_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", *argv])
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert argv[0] in line and message in line


# -- CORS ---------------------------------------------------------------------------------


def _preflight(origin: str) -> dict[str, str]:
    return {"origin": origin, "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type"}


async def test_cors_is_off_by_default(client: httpx.AsyncClient) -> None:
    answer = await client.options("/api/v1/tasks", headers=_preflight(APP))
    assert "access-control-allow-origin" not in answer.headers
    answer = await client.get("/health", headers={"origin": APP})
    assert "access-control-allow-origin" not in answer.headers


async def test_cors_allows_the_listed_origins_only(guarded: httpx.AsyncClient) -> None:
    answer = await guarded.options("/api/v1/tasks", headers=_preflight(APP))
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == APP
    assert "authorization" in answer.headers["access-control-allow-headers"].lower()
    answer = await guarded.get("/health", headers={"origin": APP})
    assert answer.headers["access-control-allow-origin"] == APP
    refused = await guarded.options("/api/v1/tasks", headers=_preflight(EVIL))
    assert "access-control-allow-origin" not in refused.headers
    answer = await guarded.get("/health", headers={"origin": EVIL})
    assert "access-control-allow-origin" not in answer.headers


def test_cors_origins_are_a_repeatable_or_comma_list() -> None:
    given = _serve_args("--cors-origin", "https://App.example.com, http://localhost:3000",
                        "--cors-origin", "https://app.example.com/")
    assert given.cors_origins == ("https://app.example.com", "http://localhost:3000")
    assert _serve_args().cors_origins == ()


# -- cross-site requests -----------------------------------------------------------------


async def _scheduled_task(client: httpx.AsyncClient) -> str:
    return await submit(client, task_type="echo", delay_seconds=3600)


async def test_a_cross_site_form_post_changes_nothing(client: httpx.AsyncClient) -> None:
    """What an HTML form on another site sends: a form body (or text/plain), its Origin."""
    task_id = await _scheduled_task(client)
    for content_type in ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                         "text/plain"):
        headers = {"origin": EVIL, "content-type": content_type}
        for path in (f"/api/v1/tasks/{task_id}/cancel", "/api/v1/queues/default/pause"):
            answer = await client.post(path, content=b"", headers=headers)
            assert_error(answer, 415, "UNSUPPORTED_MEDIA_TYPE", "content-type")
    assert (await client.get(f"/api/v1/tasks/{task_id}")).json()["status"] == "scheduled"
    queues = (await client.get("/api/v1/queues")).json()
    assert not any(q["paused"] for q in queues)


async def test_a_body_less_post_from_a_foreign_origin_is_refused(
    client: httpx.AsyncClient,
) -> None:
    """What `fetch(url, {method: "POST", mode: "no-cors"})` on another site sends."""
    task_id = await _scheduled_task(client)
    for method, path in [("POST", f"/api/v1/tasks/{task_id}/cancel"),
                         ("POST", f"/api/v1/tasks/{task_id}/requeue"),
                         ("POST", "/api/v1/queues/default/pause"),
                         ("POST", "/api/v1/schedules/nightly/trigger"),
                         ("DELETE", f"/api/v1/tasks/{task_id}")]:
        for origin in (EVIL, "null", "http://test.evil.example"):
            answer = await client.request(method, path, headers={"origin": origin})
            error = assert_error(answer, 403, "CROSS_SITE_REFUSED", "origin")
            assert "application/json" in error["error"]
    assert (await client.get(f"/api/v1/tasks/{task_id}")).json()["status"] == "scheduled"


async def test_body_less_posts_pass_without_an_origin_from_the_same_or_an_allowed_one(
    guarded: httpx.AsyncClient,
) -> None:
    for headers in ({}, {"origin": "http://test"}, {"origin": "https://test"},
                    {"origin": APP}):
        task_id = await _scheduled_task(guarded)
        answer = await guarded.post(f"/api/v1/tasks/{task_id}/cancel", headers=headers)
        assert answer.status_code == 204, (headers, answer.text)


async def test_json_passes_whatever_the_origin(client: httpx.AsyncClient) -> None:
    """A page of another site can send JSON only after a CORS preflight, which is refused."""
    task_id = await _scheduled_task(client)
    answer = await client.post(f"/api/v1/tasks/{task_id}/cancel", json={},
                               headers={"origin": EVIL})
    assert answer.status_code == 204, answer.text
    created = await client.post("/api/v1/tasks", json={"task_type": "echo"},
                                headers={"origin": EVIL})
    assert created.status_code == 201


# -- body sizes --------------------------------------------------------------------------


async def test_a_body_over_max_body_bytes_is_refused_up_front_on_every_route(
    guarded: httpx.AsyncClient,
) -> None:
    body = b'{"task_type": "echo", "payload": "' + b"x" * 5000 + b'"}'
    json_type = {"content-type": "application/json"}
    for path in ("/api/v1/tasks", "/api/v1/tasks/batch", "/api/v1/queues/default/pause",
                 "/api/v1/tasks/nope/cancel"):
        answer = await guarded.post(path, content=body, headers=json_type)
        error = assert_error(answer, 413, "PAYLOAD_TOO_LARGE", "body")
        assert f"the body is {len(body)} bytes; at most 4096" in error["error"]
    queues = (await guarded.get("/api/v1/queues")).json()
    assert not any(q["paused"] for q in queues)


async def test_a_chunked_body_is_read_only_up_to_max_body_bytes(
    guarded: httpx.AsyncClient,
) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        nonlocal sent
        yield b'{"task_type": "echo", "payload": "'
        for _ in range(100):
            sent += 1
            yield b"x" * 1024

    answer = await guarded.post("/api/v1/tasks", content=chunks(),
                                headers={"content-type": "application/json"})
    error = assert_error(answer, 413, "PAYLOAD_TOO_LARGE", "body")
    assert "over 4096 bytes" in error["error"]
    assert sent <= 5 < 100


async def test_the_default_limit_is_1_mib(client: httpx.AsyncClient) -> None:
    payload = "x" * (DEFAULT_MAX_BODY_BYTES - 10)  # under its own limit; the body is not
    answer = await client.post("/api/v1/tasks", json={"task_type": "echo", "payload": payload})
    error = assert_error(answer, 413, "PAYLOAD_TOO_LARGE", "body")
    assert f"at most {DEFAULT_MAX_BODY_BYTES}" in error["error"]
    assert _serve_args("--max-body-bytes", "4096").max_body_bytes == 4096
    assert _serve_args().max_body_bytes == DEFAULT_MAX_BODY_BYTES


def test_openapi_lists_the_guards_answers_on_every_state_changing_operation() -> None:
    from jobledger.api.app import ENDPOINTS
    from jobledger.api.openapi import build_spec

    paths = build_spec(ENDPOINTS)["paths"]
    changing = [(p, m) for p, ops in paths.items() for m in ops
                if m.upper() in ("POST", "PUT", "PATCH", "DELETE")]
    assert changing
    for path, method in changing:
        answers = paths[path][method]["responses"]
        assert {"413", "415"} <= set(answers), (method, path)
        assert "CROSS_SITE_REFUSED" in answers["403"]["description"], (method, path)
