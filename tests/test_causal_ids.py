"""Causal ids (docs/events.md, "Causal ids") through a real EmbeddedNode and its API: the
request id of a REST call, the owner's decisions citing what changed the job, a running
attempt's reports citing its pick, a child job in its parent's chain, a cancel citing its
request, and GET /api/v1/events/{id}/causes walking across jobs."""

from __future__ import annotations

import asyncio
from typing import Any

from jobledger.schemas import (
    SCHEDULES,
    SECURITY,
    WORKERS,
    Envelope,
    JobStatus,
    WorkerStarted,
    decode,
)
from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext
from tests.support.api_harness import api_client, assert_error
from tests.support.harness import (
    NodeFactory,
    advance,
    attempt_is,
    enqueue,
    history,
    settle,
    wait_until,
)

S = JobStatus


def _chain_app() -> tuple[App, asyncio.Event, list[str]]:
    app = App()
    release = asyncio.Event()
    children: list[str] = []

    @app.job("parent")
    async def parent(ctx: JobContext, payload: Any) -> None:
        children.append(await ctx.enqueue("child", {"n": 1}))
        ctx.log.info("enqueued")

    @app.job("child")
    async def child(ctx: JobContext, payload: Any) -> None:
        return None

    @app.job("hang")
    async def hang(ctx: JobContext, payload: Any) -> None:
        await release.wait()

    return app, release, children


def _by_type(envs: list[Envelope]) -> dict[str, Envelope]:
    return {env.type: env for env in envs}


async def test_a_request_id_is_the_chain_of_the_job_and_of_the_jobs_it_enqueues(
    make_node: NodeFactory,
) -> None:
    app, _, children = _chain_app()
    node = await make_node(app)
    async with api_client(node) as client:
        reply = await client.post("/api/v1/tasks", json={"task_type": "parent"},
                                  headers={"X-Request-ID": "req-42"})
        assert reply.headers["x-request-id"] == "req-42"
        parent_id = reply.json()["task_id"]
        await wait_until(node, parent_id, S.COMPLETED)
        (child_id,) = children
        await wait_until(node, child_id, S.COMPLETED)
        await settle(node)
        parent = _by_type(await history(node, parent_id))
        child = await history(node, child_id)
        assert {e.correlation_id for e in [*parent.values(), *child]} == {"req-42"}
        assert parent["JobEnqueued"].causation_id == "req-42"
        assert parent["JobPicked"].causation_id == parent["JobEnqueued"].id
        assert parent["JobSucceeded"].causation_id == parent["JobPicked"].id
        assert child[0].type == "JobEnqueued"
        assert child[0].causation_id == parent["JobPicked"].id  # the attempt enqueued it
        walk = await client.get(f"/api/v1/events/{child[-1].id}/causes")
        assert [(e["type"], e["event"]["job_id"]) for e in walk.json()] == [
            ("JobSucceeded", child_id), ("JobPicked", child_id), ("JobEnqueued", child_id),
            ("JobPicked", parent_id), ("JobEnqueued", parent_id)]
        assert walk.json()[-1]["causation_id"] == "req-42"
        entries = (await client.get(f"/api/v1/tasks/{parent_id}/history")).json()
        assert {e["correlation_id"] for e in entries} == {"req-42"}


async def test_a_request_without_an_id_gets_one_and_a_bad_one_is_refused(
    make_node: NodeFactory,
) -> None:
    app, _, _ = _chain_app()
    node = await make_node(app)
    async with api_client(node) as client:
        reply = await client.post("/api/v1/tasks", json={"task_type": "child"})
        request_id = reply.headers["x-request-id"]
        await wait_until(node, reply.json()["task_id"], S.COMPLETED)
        (enqueued, *_) = await history(node, reply.json()["task_id"])
        assert enqueued.causation_id == enqueued.correlation_id == request_id
        bad = await client.get("/api/v1/tasks", headers={"X-Request-ID": "has spaces"})
        assert_error(bad, 400, "INVALID_ARGUMENT", "X-Request-ID")
        assert_error(await client.get("/api/v1/events/nothing/causes"), 404, "NOT_FOUND")


async def test_a_cancel_cites_its_request_and_a_lease_expiry_its_pick(
    make_node: NodeFactory,
) -> None:
    app, release, _ = _chain_app()
    node = await make_node(app)
    running = await enqueue(node, "hang")
    await wait_until(node, running, S.IN_PROGRESS)
    async with api_client(node) as client:
        waiting = await enqueue(node, "hang", delay_seconds=60)
        await wait_until(node, waiting, S.SCHEDULED)
        reply = await client.post(f"/api/v1/tasks/{waiting}/cancel",
                                  headers={"X-Request-ID": "stop-it"})
        assert reply.status_code == 204
    cancel = _by_type(await history(node, waiting))
    assert cancel["JobCancelRequested"].causation_id == "stop-it"
    assert cancel["JobCancelled"].causation_id == cancel["JobCancelRequested"].id
    # An enqueue in-process names no chain: the JobEnqueued's own id is the job's.
    assert cancel["JobCancelled"].correlation_id == cancel["JobEnqueued"].id

    dispatcher = node.dispatcher
    assert dispatcher is not None
    dispatcher.executor.cancel(running, report=False)  # it hangs on, unreported
    await advance(node, 31)  # past the lease nobody renews
    await wait_until(node, running, attempt_is(1, S.SCHEDULED))
    events = await history(node, running)
    expired = _by_type(events)
    assert expired["JobLeaseExpired"].causation_id == expired["JobPicked"].id
    release.set()


async def test_a_sync_handler_enqueues_from_its_thread_and_a_bad_option_is_named(
    make_node: NodeFactory,
) -> None:
    app = App()
    made: list[str] = []
    refused: list[str] = []

    @app.job("sync_parent")
    def sync_parent(ctx: JobContext, payload: Any) -> None:
        made.append(ctx.enqueue_sync("leaf", {"from": "thread"}, priority=200))
        try:
            ctx.enqueue_sync("leaf", priority=999)
        except ValueError as exc:  # InvalidJob
            refused.append(str(exc))

    @app.job("leaf")
    async def leaf(ctx: JobContext, payload: Any) -> None:
        return None

    node = await make_node(app)
    parent_id = await enqueue(node, "sync_parent")
    await wait_until(node, parent_id, S.COMPLETED)
    (child_id,) = made
    child = await wait_until(node, child_id, S.COMPLETED)
    parent = _by_type(await history(node, parent_id))
    assert child.priority == 200 and child.correlation_id == parent["JobEnqueued"].id
    assert (await history(node, child_id))[0].causation_id == parent["JobPicked"].id
    assert len(refused) == 1 and "priority" in refused[0]


async def _topic(node: Any, topic: str) -> list[Envelope]:
    """Every envelope of a topic, partition by partition."""
    log = node.backend.topic(topic)
    return [decode(r.value) for p in range(log.partitions) for r in await log.read(p, 0)]


async def test_user_and_key_events_cite_the_request_that_asked(make_node: NodeFactory) -> None:
    node = await make_node(App())
    async with api_client(node) as client:
        def asked(n: int) -> dict[str, str]:
            return {"X-Request-ID": f"req-{n}"}

        key = (await client.post("/api/v1/keys", headers=asked(1), json={
            "name": "ci", "permissions": ["read_tasks"]})).json()
        await client.delete(f"/api/v1/keys/{key['id']}", headers=asked(2))
        await client.post("/auth/register", headers=asked(3), json={
            "username": "ana", "password": "a long enough password 1", "permissions": []})
        await client.put("/api/v1/users/ana/permissions", headers=asked(4),
                         json={"permissions": ["read_tasks", "submit_tasks"]})
        await client.delete("/api/v1/users/ana", headers=asked(5))
    events = [(e.type, e.causation_id, e.correlation_id) for e in await _topic(node, SECURITY)]
    assert events == [
        ("KeyCreated", "req-1", "req-1"), ("KeyRevoked", "req-2", "req-2"),
        ("UserRegistered", "req-3", "req-3"), ("UserPermissionsChanged", "req-4", "req-4"),
        ("UserRemoved", "req-5", "req-5")]


async def test_schedule_events_cite_the_request_that_asked(make_node: NodeFactory) -> None:
    app, _release, _children = _chain_app()
    node = await make_node(app)
    async with api_client(node) as client:
        def asked(n: int) -> dict[str, str]:
            return {"X-Request-ID": f"req-{n}"}

        for n, (method, path, body) in enumerate([
            ("POST", "/api/v1/schedules", {"id": "s", "task_type": "child",
                                           "trigger": "interval", "seconds": 3600}),
            ("PUT", "/api/v1/schedules/s", {"seconds": 7200}),
            ("POST", "/api/v1/schedules/s/pause", None),
            ("POST", "/api/v1/schedules/s/resume", None),
            ("DELETE", "/api/v1/schedules/s", None)], start=1):
            answer = await client.request(method, path, headers=asked(n), json=body)
            assert answer.status_code < 300, answer.text
    events = [(e.type, e.causation_id, e.correlation_id) for e in await _topic(node, SCHEDULES)]
    assert events == [
        ("ScheduleDefined", "req-1", "req-1"), ("ScheduleUpdated", "req-2", "req-2"),
        ("SchedulePaused", "req-3", "req-3"), ("ScheduleResumed", "req-4", "req-4"),
        ("ScheduleRemoved", "req-5", "req-5")]


async def test_a_workers_start_is_the_chain_of_its_heartbeats_and_its_stop(
    make_node: NodeFactory,
) -> None:
    node = await make_node(App(), lease_seconds=30)
    await advance(node, 25)  # a few heartbeats
    await make_node.stop(node)
    started, *rest = await _topic(node, WORKERS)
    assert started.type == "WorkerStarted" and started.correlation_id == started.id
    assert started.causation_id is None
    assert {e.type for e in rest} == {"WorkerHeartbeat", "WorkerStopped"}
    assert {(e.causation_id, e.correlation_id) for e in rest} == {(started.id, started.id)}


async def test_a_worker_lost_with_its_server_cites_its_start(make_node: NodeFactory) -> None:
    """A worker still alive in the read model when the next server starts on the file
    died with the previous one; its WorkerLost cites the start, as its heartbeats did."""
    first = await make_node(App())
    ghost = WorkerStarted(worker_id="ghost", hostname="gone", pid=1, concurrency=1,
                          task_types=[])
    await first.publisher.publish(ghost, "ghost")
    await settle(first)
    await make_node.stop(first)
    second = await make_node(App())
    await settle(second)
    started, lost = [e for e in await _topic(second, WORKERS) if e.key == "ghost"]
    assert lost.type == "WorkerLost"
    assert (lost.causation_id, lost.correlation_id) == (started.id, started.id)
