"""API keys in the Kafka mode: two API nodes on the test broker, each projecting the
security topic into its own read models. A key created through one works on the other,
and a revocation through one is refused by the other within 2 s (issue 17)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from jobledger.services.security.bootstrap import admin_key_id
from tests.support.auth import ADMIN_KEY, bearer, make_key
from tests.support.kafka_broker import TansuBroker
from tests.support.kafka_harness import ACROSS_NODES_S, seconds_until, status_on, two_api_nodes

pytestmark = pytest.mark.slow


@pytest.fixture
async def clients(tmp_path: Path, kafka_broker: TansuBroker
                  ) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with two_api_nodes(tmp_path, kafka_broker) as both:
        yield both


async def test_a_key_made_on_one_node_works_on_the_other_and_its_revocation_too(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    a, b = clients
    key = await make_key(a, "read_tasks")
    assert await status_on(a, key) == 200  # at once where it was made
    assert await seconds_until(b, key, 200) < ACROSS_NODES_S

    key_id = next(k["id"] for k in (await b.get("/api/v1/keys", headers=bearer(ADMIN_KEY))).json()
                  if k["name"] == "test")
    revoked = await a.delete(f"/api/v1/keys/{key_id}", headers=bearer(ADMIN_KEY))
    assert revoked.status_code == 200
    assert await status_on(a, key) == 401  # at once where it was revoked
    took = await seconds_until(b, key, 401)
    assert took < ACROSS_NODES_S


async def test_both_nodes_share_one_admin_key_registered_once(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    for client in clients:
        listed = (await client.get("/api/v1/keys", headers=bearer(ADMIN_KEY))).json()
        assert [k["id"] for k in listed] == [admin_key_id(ADMIN_KEY)]
