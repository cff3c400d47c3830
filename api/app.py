"""The Starlette application. The node (log, projections, dispatcher) lives in the lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette

from jobledger.services.node import EmbeddedNode

from . import docs_page, openapi, runs, system, tasks
from .errors import EXCEPTION_HANDLERS


# Every documented endpoint: each module's `endpoints` give its routes and its part of
# /openapi.json (api/openapi.py says how to add one).
ENDPOINTS = [*tasks.endpoints, *system.endpoints, *openapi.endpoints, *docs_page.endpoints]


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

    app = Starlette(
        routes=[*openapi.routes_of(ENDPOINTS), *runs.routes],
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.router.redirect_slashes = False  # /api/v1/tasks/ is no endpoint: 404, not a 307
    app.state.openapi = openapi.build_spec(ENDPOINTS)
    return app
