"""Fixtures shared by the tests; the helpers they use live in tests/support/harness.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.harness import NodeFactory
from tests.support.kafka_broker import kafka_broker, kcat_broker  # noqa: F401  (test brokers, per module)


@pytest.fixture
async def make_node(tmp_path: Path) -> AsyncIterator[NodeFactory]:
    """`node = await make_node(app, concurrency=1, ...)`: an EmbeddedNode over
    tmp_path/'j.db' with a ManualClock, stopped after the test."""
    factory = NodeFactory(tmp_path)
    yield factory
    await factory.close()
