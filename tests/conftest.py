"""Fixtures shared by the tests; the helpers they use live in tests/support/harness.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from jobledger.services.node.embedded import EmbeddedNode
from tests.support.api_harness import api_client
from tests.support.harness import NodeFactory
from tests.support.kafka_broker import kafka_broker, kcat_broker  # noqa: F401  (test brokers, per module)


@pytest.fixture
async def make_node(tmp_path: Path) -> AsyncIterator[NodeFactory]:
    """`node = await make_node(app, concurrency=1, ...)`: an EmbeddedNode over
    tmp_path/'j.db' with a ManualClock, stopped after the test."""
    factory = NodeFactory(tmp_path)
    yield factory
    await factory.close()


@pytest.fixture
async def client(node: EmbeddedNode) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client of the `node` fixture's API (each module that uses it defines `node`)."""
    async with api_client(node) as c:
        yield c
