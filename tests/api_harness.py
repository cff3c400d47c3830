"""The API in front of a harness node (tests/harness.py: a ManualClock, tmp SQLite files),
reached through httpx's ASGI transport, plus the checks every error answer must pass."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from jobledger.api.app import create_app
from jobledger.api.errors import CODES
from jobledger.services.node import EmbeddedNode

ERROR_KEYS = {"error", "code", "field", "details"}


@asynccontextmanager
async def api_client(node: EmbeddedNode, **transport: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client of the app over this started node. httpx's ASGITransport runs no
    lifespan, so the node the test started (and will stop) is put behind the app here."""
    api = create_app(lambda: node)
    api.state.node = node
    asgi = httpx.ASGITransport(app=api, **transport)
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
