"""The client's typed errors (services/client/errors.py): each refusal of a real server as
its class, keeping .status, .code and .field; the answers jobledger does not give yet
(401, 403, 429) from a stub server on a loopback port; 429s waited out within the bound."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from aiohttp import web

from jobledger import (
    Client,
    ClientError,
    Conflict,
    Forbidden,
    InvalidArgument,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    ServerError,
    Unauthorized,
    UnknownTaskType,
)
from jobledger.services.client.errors import error_of, seconds_of
from tests.support.api_harness import handlers
from tests.support.harness import NodeFactory
from tests.support.live_server import live_server


async def test_each_refusal_of_the_server_is_its_class(make_node: NodeFactory) -> None:
    node = await make_node(handlers, concurrency=1)
    await node.commands.set_paused("default", True)
    async with live_server(node) as base, Client(base) as client:
        task_id = await client.submit("echo")
        with pytest.raises(NotFound) as missing:
            await client.get("nope")
        with pytest.raises(Conflict) as conflict:
            await client.requeue(task_id)
        with pytest.raises(UnknownTaskType) as unknown:
            await client.submit("ecko")
        with pytest.raises(InvalidArgument) as invalid:
            await client.list_page(limit=5_000)
        with pytest.raises(InvalidArgument) as after:
            await client.list_page(starting_after="nope")
        with pytest.raises(NotFound) as no_schedule:
            await client.schedule("nope")
    assert (missing.value.status, missing.value.code) == (404, "NOT_FOUND")
    assert (conflict.value.status, conflict.value.code) == (409, "CONFLICT")
    assert (unknown.value.code, unknown.value.field) == ("UNKNOWN_TASK_TYPE", "task_type")
    assert "echo" in str(unknown.value)  # the known types are named
    assert isinstance(unknown.value, InvalidArgument)
    assert (invalid.value.status, invalid.value.field) == (400, "limit")
    assert (after.value.field, str(after.value)) == ("starting_after",
                                                     "starting_after: no task nope")
    assert no_schedule.value.code == "JOB_NOT_FOUND"
    for error in (missing, conflict, unknown, invalid, no_schedule):
        assert isinstance(error.value, ClientError)


@asynccontextmanager
async def stub(answer: Callable[[int], web.Response],
               seen: list[web.Request] | None = None) -> AsyncIterator[str]:
    """A server answering its n-th request (from 0) with answer(n), adding each request to
    `seen`; yields its URL."""
    calls: list[web.Request] = [] if seen is None else seen

    async def handle(request: web.Request) -> web.Response:
        calls.append(request)
        return answer(len(calls) - 1)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def error(status: int, code: str, **headers: str) -> web.Response:
    body = f'{{"error": "{code.lower()}", "code": "{code}", "field": null, "details": null}}'
    return web.Response(status=status, text=body, content_type="application/json",
                        headers=headers)


def queues(n: int = 0) -> web.Response:
    return web.Response(text="[]", content_type="application/json")


@pytest.mark.parametrize(("status", "code", "kind"), [
    (401, "UNAUTHORIZED", Unauthorized), (403, "FORBIDDEN", Forbidden),
    (500, "INTERNAL", ServerError), (503, "LOG_UNAVAILABLE", ServerError),
    (504, "OUTCOME_UNKNOWN", OutcomeUnknown), (418, "TEAPOT", ClientError),
])
async def test_answers_by_status_and_code(status: int, code: str, kind: type) -> None:
    async with stub(lambda n: error(status, code)) as url, Client(url) as client:
        with pytest.raises(kind) as raised:
            await client.queues()
    assert (type(raised.value), raised.value.status, raised.value.code) == (kind, status, code)


async def test_the_api_key_is_sent_as_a_bearer_token() -> None:
    seen: list[web.Request] = []
    async with stub(queues, seen) as url:
        async with Client(url, api_key="s3cret") as keyed, Client(url) as anonymous:
            await keyed.queues()
            await anonymous.queues()
    assert [r.headers.get("Authorization") for r in seen] == ["Bearer s3cret", None]


async def test_429s_are_waited_out_as_retry_after_says() -> None:
    def answer(n: int) -> web.Response:  # a fresh answer each time: aiohttp sends one once
        return error(429, "RATE_LIMITED", **{"Retry-After": "0.2"}) if n < 2 else queues()

    async with stub(answer) as url, Client(url) as client:
        started = time.monotonic()
        assert await client.queues() == []
    assert 0.4 <= time.monotonic() - started < 2


async def test_a_429_beyond_the_bound_is_rate_limited_with_retry_after() -> None:
    async with stub(lambda n: error(429, "RATE_LIMITED", **{"Retry-After": "5"})) as url:
        async with Client(url, rate_limit_wait=1.0) as client:
            started = time.monotonic()
            with pytest.raises(RateLimited) as limited:
                await client.queues()
    assert time.monotonic() - started < 1  # 5 s is past the bound: raised at once
    assert (limited.value.status, limited.value.retry_after) == (429, 5.0)


async def test_a_429_without_retry_after_backs_off_until_the_bound() -> None:
    async with stub(lambda n: error(429, "RATE_LIMITED")) as url:
        async with Client(url, rate_limit_wait=1.6) as client:
            started = time.monotonic()
            with pytest.raises(RateLimited) as limited:
                await client.queues()
    assert 1.5 <= time.monotonic() - started < 3  # 0.5 + 1.0, then 2.0 would pass 1.6
    assert limited.value.retry_after is None


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert seconds_of("7") == 7.0 and seconds_of("") is None and seconds_of("soon") is None
    assert 28 < (seconds_of(later) or 0) <= 30
    refused = error_of(429, {"error": "slow down"}, "3")
    assert isinstance(refused, RateLimited) and refused.retry_after == 3.0
