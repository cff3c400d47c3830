"""The Starlette application. The node (log, projections, dispatcher) lives in the lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from jobledger.services.commands import Conflict, NotFound
from jobledger.services.log import AppendOutcomeUnknown, LogError
from jobledger.services.node import EmbeddedNode
from jobledger.services.producer import InvalidJob

from . import runs, system, tasks
from .responses import ApiError


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidJob)
    return ApiError(400, "INVALID_ARGUMENT", str(exc), exc.field).response()


async def _not_found(request: Request, exc: Exception) -> Response:
    return ApiError(404, "NOT_FOUND", str(exc)).response()


async def _conflict(request: Request, exc: Exception) -> Response:
    return ApiError(409, "CONFLICT", str(exc)).response()


async def _log_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, AppendOutcomeUnknown):
        return ApiError(504, "OUTCOME_UNKNOWN", f"{exc}; retry with the same idempotency_key").response()
    return ApiError(503, "LOG_UNAVAILABLE", str(exc)).response()


def create_app(make_node: Callable[[], EmbeddedNode]) -> Starlette:
    """The API over a node that the app starts on startup and stops on shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        node = make_node()
        await node.start()
        app.state.node = node
        try:
            yield
        finally:
            await node.stop()

    return Starlette(
        routes=[*tasks.routes, *runs.routes, *system.routes],
        lifespan=lifespan,
        exception_handlers={
            ApiError: _api_error,
            InvalidJob: _invalid,
            NotFound: _not_found,
            Conflict: _conflict,
            LogError: _log_error,
        },
    )
