"""Users in the Kafka mode: two API nodes on the test broker sharing JOBLEDGER_JWT_SECRET,
each projecting the security topic into its own users table. A user registered through
one signs in on the other, a token issued by one works on the other, and a change of
permissions or a removal through one reaches the other within 2 s (issue 17)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support.auth import ADMIN_KEY, PASSWORD, bearer, make_user
from tests.support.kafka_broker import TansuBroker
from tests.support.kafka_harness import ACROSS_NODES_S, seconds_until, status_on, two_api_nodes

pytestmark = pytest.mark.slow


@pytest.fixture
async def clients(tmp_path: Path, kafka_broker: TansuBroker
                  ) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with two_api_nodes(tmp_path, kafka_broker) as both:
        yield both


async def _login_status(client: httpx.AsyncClient) -> int:
    answer = await client.post("/auth/login", json={"username": "ana", "password": PASSWORD})
    return answer.status_code


async def test_a_user_made_on_one_node_signs_in_on_the_other_and_its_changes_follow(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    a, b = clients
    token = await make_user(a, "ana", "submit_tasks")  # signed in on a
    assert await status_on(a, token) == 403  # known at once on a, without read_tasks
    assert await seconds_until(b, token, 403) < ACROSS_NODES_S  # b knows the user
    assert await _login_status(b) == 200  # and its password

    granted = await a.put("/api/v1/users/ana/permissions", headers=bearer(ADMIN_KEY),
                          json={"permissions": ["read_tasks"]})
    assert granted.status_code == 200, granted.text
    assert await status_on(a, token) == 200
    assert await seconds_until(b, token, 200) < ACROSS_NODES_S

    removed = await a.delete("/api/v1/users/ana", headers=bearer(ADMIN_KEY))
    assert removed.status_code == 200, removed.text
    assert await status_on(a, token) == 401
    assert await seconds_until(b, token, 401) < ACROSS_NODES_S
    assert await _login_status(b) == 401


async def test_both_nodes_list_the_same_users(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    a, b = clients
    token = await make_user(b, "bob", "read_tasks")
    assert await seconds_until(a, token, 200) < ACROSS_NODES_S
    listed = [(await c.get("/api/v1/users", headers=bearer(ADMIN_KEY))).json() for c in clients]
    assert listed[0] == listed[1] and [u["username"] for u in listed[0]] == ["bob"]
