"""What handlers reach through request.app.state: the node the lifespan started (an
EmbeddedNode or a KafkaNode: handlers use only what both have, `Node`)."""

from __future__ import annotations

from starlette.requests import Request

from jobledger.projections.queries import Queries
from jobledger.services.node.base import Node
from jobledger.services.write.commands import Commands


def node(request: Request) -> Node:
    return request.app.state.node  # type: ignore[no-any-return]  # Starlette's state is untyped


def commands(request: Request) -> Commands:
    return node(request).commands


def queries(request: Request) -> Queries:
    return node(request).queries
