"""The API in front of a harness node (tests/support/harness.py: a ManualClock, tmp SQLite files),
reached through httpx's ASGI transport; a real `jobledger serve`; the handlers the API
tests run; and the checks every error answer must pass."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx

from jobledger.api.app import create_app, serving
from jobledger.api.errors import CODES
from jobledger.services.handlers.app import App, PermanentError
from jobledger.services.handlers.context import JobContext
from jobledger.services.node.embedded import EmbeddedNode
from jobledger.services.security.bootstrap import SecuritySettings

from .procs import ServerProcess

ERROR_KEYS = {"error", "code", "field", "details"}

handlers = App()


@handlers.job("echo")
async def echo(ctx: JobContext, payload: Any) -> Any:
    return payload


@handlers.job("block")
async def block(ctx: JobContext, payload: Any) -> None:
    await asyncio.Event().wait()  # runs until cancelled


@handlers.job("broken")
async def broken(ctx: JobContext, payload: Any) -> None:
    raise PermanentError("never works")


@asynccontextmanager
async def api_client(node: EmbeddedNode, security: SecuritySettings | None = None,
                     **transport: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client of the app over this started node (auth as `security` says, off by
    default). httpx's ASGITransport runs no lifespan, so the node the test started (and
    will stop) is served as the lifespan would serve it."""
    api = create_app(lambda: node, security=security, telemetry=node.config.telemetry)
    asgi = httpx.ASGITransport(app=api, **transport)
    async with serving(api, node):
        async with httpx.AsyncClient(transport=asgi, base_url="http://test") as client:
            yield client


def assert_error(response: httpx.Response, status: int, code: str,
                 field: str | None = None) -> dict[str, Any]:
    """The answer is the one error shape with this status, code and (if given) field."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == ERROR_KEYS, body
    assert body["code"] == code, body
    assert CODES[code] == status
    assert body["error"], body
    if field is not None:
        assert body["field"] == field, body
    return body


async def submit(client: httpx.AsyncClient, **body: Any) -> str:
    """POST /api/v1/tasks, expecting 201; the task id."""
    response = await client.post("/api/v1/tasks", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["task_id"])


@contextmanager
def demo_server(directory: Path, *args: str,
                env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """`jobledger serve --demo` over directory/j.db (and args), healthy, stopped afterwards."""
    process = ServerProcess(directory / "j.db", "--demo", *args, env=env)
    try:
        process.wait_healthy()
        yield process
    finally:
        process.stop()
