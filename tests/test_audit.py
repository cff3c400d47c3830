"""Who did it, on the log: with auth on, every event a request appends carries the key that
authenticated it ({kind: "key", id, name}) and X-API-Key-Name is ignored; with auth off the
header stays a label, shown unverified in a task's history."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobledger.schemas import TOPICS, Actor, ActorKind, decode
from jobledger.services.node.embedded import EmbeddedNode
from tests.support.api_harness import api_client, handlers, submit
from tests.support.auth import ADMIN_KEY, auth_on, bearer, make_key
from tests.support.harness import NodeFactory, wait_until

# Events the node appends on its own (picks, outcomes, fires): not a request's.
NODE_KINDS = {ActorKind.DISPATCHER, ActorKind.WORKER, ActorKind.SCHEDULER}
SPOOF = {"X-API-Key-Name": "mallory"}
Call = Callable[[httpx.AsyncClient, dict[str, str]], Awaitable[httpx.Response]]


@pytest.fixture
async def node(make_node: NodeFactory) -> EmbeddedNode:
    return await make_node(handlers)


async def _ends(node: EmbeddedNode) -> dict[str, dict[int, int]]:
    return {t: await node.backend.topic(t).end_offsets() for t in TOPICS}


async def _appended_since(node: EmbeddedNode, ends: dict[str, dict[int, int]]) -> list[Actor]:
    """The actors of the events appended since `ends` that the node did not decide."""
    actors = []
    for topic, partitions in ends.items():
        log = node.backend.topic(topic)
        for partition, start in partitions.items():
            for record in await log.read(partition, start, limit=1000):
                actor = decode(record.value).actor
                if actor.kind not in NODE_KINDS:
                    actors.append(actor)
    return actors


async def _a_task(client: httpx.AsyncClient, key: dict[str, str]) -> str:
    return await submit(client, task_type="echo", delay_seconds=60) if not key else str(
        (await client.post("/api/v1/tasks", json={"task_type": "echo", "delay_seconds": 60},
                           headers=key)).json()["task_id"])


REQUESTS: dict[str, Call] = {
    "enqueue": lambda c, h: c.post("/api/v1/tasks", json={"task_type": "echo"}, headers=h),
    "batch": lambda c, h: c.post("/api/v1/tasks/batch", headers=h,
                                 json={"tasks": [{"task_type": "echo"}] * 2}),
    "pause a queue": lambda c, h: c.post("/api/v1/queues/q/pause", headers=h),
    "define a schedule": lambda c, h: c.post("/api/v1/schedules", headers=h, json={
        "id": "nightly", "task_type": "echo", "trigger": "manual"}),
    "make a key": lambda c, h: c.post("/api/v1/keys", headers=h,
                                      json={"name": "k", "permissions": ["read_tasks"]}),
}


@pytest.mark.parametrize("request_name", sorted(REQUESTS))
async def test_with_auth_on_a_requests_events_carry_its_key_and_not_the_header(
    node: EmbeddedNode, tmp_path: Path, request_name: str,
) -> None:
    async with api_client(node, auth_on(tmp_path)) as client:
        key = await make_key(client, "admin", name="deploy-bot")
        (mine,) = [k for k in (await client.get("/api/v1/keys", headers=bearer(ADMIN_KEY))).json()
                   if k["name"] == "deploy-bot"]
        before = await _ends(node)
        response = await REQUESTS[request_name](client, {**bearer(key), **SPOOF})
        assert response.status_code < 300, response.text
        actors = await _appended_since(node, before)
    assert actors and set(actors) == {Actor(ActorKind.KEY, mine["id"], "deploy-bot")}


async def test_with_auth_on_cancel_requeue_and_a_schedules_fire_carry_the_key_too(
    node: EmbeddedNode, tmp_path: Path,
) -> None:
    async with api_client(node, auth_on(tmp_path)) as client:
        key = {**bearer(await make_key(client, "admin", name="ops")), **SPOOF}
        task_id = await _a_task(client, key)
        await client.post("/api/v1/schedules", headers=key,
                          json={"id": "s", "task_type": "echo", "trigger": "manual"})
        before = await _ends(node)
        assert (await client.post(f"/api/v1/tasks/{task_id}/cancel", headers=key)).is_success
        await wait_until(node, task_id, "cancelled")
        assert (await client.post(f"/api/v1/tasks/{task_id}/requeue", headers=key)).is_success
        assert (await client.post("/api/v1/schedules/s/trigger", headers=key)).is_success
        actors = await _appended_since(node, before)
        history = (await client.get(f"/api/v1/tasks/{task_id}/history", headers=key)).json()
    assert {(a.kind, a.name) for a in actors} == {(ActorKind.KEY, "ops")}
    by_type = {entry["type"]: entry["actor"] for entry in history}
    assert by_type["JobEnqueued"]["name"] == "ops" and by_type["JobEnqueued"]["verified"] is True
    assert by_type["JobCancelled"]["kind"] == "dispatcher"  # decided by the owner, unverified
    assert by_type["JobCancelled"]["verified"] is False


@pytest.mark.parametrize(("headers", "label"), [(SPOOF, "mallory"), ({}, "anonymous")])
async def test_with_auth_off_the_header_is_a_label_shown_unverified(
    node: EmbeddedNode, headers: dict[str, Any], label: str,
) -> None:
    async with api_client(node) as client:
        response = await client.post("/api/v1/tasks", json={"task_type": "echo"}, headers=headers)
        task_id = response.json()["task_id"]
        (enqueued, *_) = (await client.get(f"/api/v1/tasks/{task_id}/history")).json()
    assert enqueued["actor"] == {"kind": "api", "id": label, "name": "", "verified": False}
