"""Kafka-mode nodes for tests: settings that suit the test broker, and in-process nodes.

The test broker cannot do idempotent producers (docs/kafka.md), and group joins and
rebalances take about one session timeout, so tests use short ones.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from jobledger.services.handlers.app import App
from jobledger.services.kafka.ownership import GroupSettings
from jobledger.services.log.kafka import KafkaConfig
from jobledger.services.node.kafka import KafkaNode, KafkaNodeConfig
from jobledger.services.runtime.clock import Clock
from tests.support.api_harness import api_client
from tests.support.auth import auth_on, fast_passwords
from tests.support.kafka_broker import TansuBroker, unique_prefix

SESSION_TIMEOUT_MS = 1500  # a killed member's partitions move after about this long
PARTITIONS = 4


def kafka_config(broker: TansuBroker, prefix: str | None = None, **overrides: Any) -> KafkaConfig:
    settings: dict[str, Any] = {
        "bootstrap_servers": broker.bootstrap,
        "topic_prefix": prefix or unique_prefix(),
        "partitions": PARTITIONS,
        "idempotent": False,  # the test broker refuses InitProducerId
        "request_timeout_ms": 10_000,
    }
    return KafkaConfig(**{**settings, **overrides})


def node_config(kafka: KafkaConfig, views: Path, **overrides: Any) -> KafkaNodeConfig:
    """An API node (projections only) unless overridden."""
    settings: dict[str, Any] = {
        "kafka": kafka, "views": views, "run_workers": False, "run_scheduler": False,
        "group": GroupSettings(SESSION_TIMEOUT_MS), "catch_up_seconds": 30.0,
        # Recorded histories name workers that never joined a group: keep them as recorded.
        "mark_lost_workers": False,
    }
    return KafkaNodeConfig(**{**settings, **overrides})


async def started(config: KafkaNodeConfig, app: App | None = None,
                  clock: Clock | None = None) -> KafkaNode:  # fmt: skip
    node = KafkaNode(config, app or App(), clock)
    await node.start()
    return node


@asynccontextmanager
async def two_api_nodes(tmp_path: Path, broker: TansuBroker
                        ) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Clients of two API nodes of one cluster, auth on, both given the same
    JOBLEDGER_ADMIN_KEY and JOBLEDGER_JWT_SECRET (tests/support/auth.py), each folding the
    security topic into its own read models. Passwords are hashed cheaply (fast_passwords)."""
    config = kafka_config(broker)
    nodes: list[KafkaNode] = []
    async with AsyncExitStack() as stack:
        try:
            made = []
            for name in ("a", "b"):
                node = await started(node_config(config, tmp_path / f"{name}.views.db"))
                node.users.passwords = fast_passwords()
                nodes.append(node)
                (tmp_path / name).mkdir()
                made.append(await stack.enter_async_context(
                    api_client(node, auth_on(tmp_path / name))))  # type: ignore[arg-type]
            yield made[0], made[1]
        finally:
            await stack.aclose()
            for node in reversed(nodes):
                await node.stop()


ACROSS_NODES_S = 2.0  # a key or user change must reach every node within this (real time)
_POLL_S = 0.02


async def status_on(client: httpx.AsyncClient, credential: str) -> int:
    """What GET /api/v1/stats answers the credential (a key or a token)."""
    answer = await client.get("/api/v1/stats", headers={"Authorization": f"Bearer {credential}"})
    return answer.status_code


async def seconds_until(client: httpx.AsyncClient, credential: str, status: int) -> float:
    """Real seconds until `client` answers `status` to the credential (bounded)."""
    start = time.monotonic()
    while await status_on(client, credential) != status:
        if time.monotonic() - start > 10 * ACROSS_NODES_S:
            raise TimeoutError(f"still not {status} after {10 * ACROSS_NODES_S} s")
        await asyncio.sleep(_POLL_S)
    return time.monotonic() - start
