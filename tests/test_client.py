"""The Python client (services/client/async_client.py) against a real uvicorn server, and the
`jobledger submit` / `jobledger status` commands against a real `jobledger serve --demo`."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from jobledger.schemas import JobStatus
from jobledger.schemas.api import (
    HistoryEntry,
    QueueDepth,
    QueueInfo,
    QueueToggled,
    RunDetail,
    Stats,
    TaskDetail,
    WorkerInfo,
)
from jobledger.schemas.schedules import ScheduleView
from jobledger.services.cli.common import Exit
from jobledger.services.cli.main import main
from jobledger.services.client.async_client import (
    Client,
    ClientError,
    ServerUnreachable,
    WaitTimeout,
)
from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext
from jobledger.services.node.embedded import EmbeddedNode
from jobledger.services.write.commands import CancelOutcome
from jobledger.services.write.producer import InvalidJob, task_request
from tests.support.api_harness import demo_server, handlers
from tests.support.harness import NodeFactory, settle, wait_until
from tests.support.live_server import live_server
from tests.support.procs import ServerProcess, free_port


async def held(make_node: NodeFactory) -> EmbeddedNode:
    """A node whose queues "default" and "mail" are paused: jobs stay pending."""
    node = await make_node(handlers, concurrency=1)
    for queue in ("default", "mail"):
        await node.commands.set_paused(queue, True)
    return node


async def test_submit_get_and_the_options_reach_the_server(make_node: NodeFactory) -> None:
    node = await held(make_node)
    async with live_server(node) as base, Client(base + "/") as client:
        task_id = await client.submit("echo", {"to": "a@example.com"}, priority=200, queue="mail")
        task = await client.get(task_id)
    assert isinstance(task, TaskDetail)
    assert (task.task_id, task.status, task.priority, task.queue, task.payload) == (
        task_id, "pending", 200, "mail", {"to": "a@example.com"})


async def test_an_idempotency_key_returns_the_first_task(make_node: NodeFactory) -> None:
    node = await held(make_node)
    async with live_server(node) as base, Client(base) as client:
        first = await client.submit("echo", 1, idempotency_key="order-7")
        again = await client.submit("echo", 2, idempotency_key="order-7")
    assert again == first


async def test_submit_many_keeps_the_order_across_requests(make_node: NodeFactory) -> None:
    node = await held(make_node)
    tasks = [task_request("echo", i) for i in range(1_005)]  # two batch requests
    async with live_server(node) as base, Client(base) as client:
        ids = await client.submit_many(tasks)
        await settle(node)  # a batch is answered once durable, before the read model has it
        payloads = [(await client.get(ids[i])).payload for i in (0, 999, 1_000, 1_004)]
        stats = await client.stats()
    assert len(set(ids)) == 1_005 and payloads == [0, 999, 1_000, 1_004]
    assert stats.pending_count == 1_005


async def test_cancel_and_requeue(make_node: NodeFactory) -> None:
    node = await held(make_node)
    async with live_server(node) as base, Client(base) as client:
        task_id = await client.submit("echo", "x")
        outcome = await client.cancel(task_id)
        cancelled = (await client.get(task_id)).status
        again = await client.requeue(task_id)
        await wait_until(node, task_id, JobStatus.PENDING)
        requeued = (await client.get(task_id)).status
    assert (outcome, cancelled, requeued) == (CancelOutcome.CANCELLED, "cancelled", "pending")
    assert (again.task_id, again.status) == (task_id, "pending")


async def test_a_refusal_is_a_client_error_with_the_servers_code(make_node: NodeFactory) -> None:
    node = await held(make_node)
    async with live_server(node) as base, Client(base) as client:
        with pytest.raises(ClientError) as missing:
            await client.get("0190d0e0-0000-7000-8000-000000000000")
        task_id = await client.submit("echo", "x")
        with pytest.raises(ClientError) as conflict:
            await client.requeue(task_id)  # pending: nothing to requeue
    assert (missing.value.status, missing.value.code) == (404, "NOT_FOUND")
    assert (conflict.value.status, conflict.value.code) == (409, "CONFLICT")


async def test_bad_arguments_fail_before_any_request() -> None:
    async with Client(f"http://127.0.0.1:{free_port()}") as client:  # nobody listens
        with pytest.raises(InvalidJob) as bad:
            await client.submit("echo", priority=256)
    assert bad.value.field == "priority"


async def test_no_server_is_server_unreachable_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with Client(url) as client:
        with pytest.raises(ServerUnreachable, match=f"POST {url}/api/v1/tasks"):
            await client.submit("echo")


async def test_wait_reports_each_change_and_returns_the_finished_task(
    make_node: NodeFactory,
) -> None:
    node = await held(make_node)
    seen: list[TaskDetail] = []
    async with live_server(node) as base, Client(base) as client:
        task_id = await client.submit("echo", "x")
        waiting = asyncio.create_task(client.wait(task_id, interval=0.01, on_change=seen.append))
        async with asyncio.timeout(5):
            while not seen:
                await asyncio.sleep(0.01)
        await node.commands.set_paused("default", False)
        done = await waiting
    assert seen[0].status == "pending" and seen[-1] == done and done.status == "completed"
    stages = [(t.status, t.attempt, t.progress) for t in seen]
    assert all(a != b for a, b in itertools.pairwise(stages))  # only changes are reported


async def test_a_wait_timeout_is_its_own_timeout_error(make_node: NodeFactory) -> None:
    node = await held(make_node)
    async with live_server(node) as base, Client(base) as client:
        task_id = await client.submit("echo", "x")
        with pytest.raises(WaitTimeout) as timed_out:
            await client.wait(task_id, timeout=0.2, interval=0.01)
    assert isinstance(timed_out.value, TimeoutError)
    assert not isinstance(timed_out.value, ServerUnreachable)
    assert str(timed_out.value) == f"task {task_id} is still pending after 0.2 s"
    assert timed_out.value.task is not None and timed_out.value.task.status == "pending"


# -- every endpoint, typed ----------------------------------------------------------------------

chatty = App()


@chatty.job("chatty")
async def chat(ctx: JobContext, payload: dict[str, int]) -> dict[str, int]:
    ctx.log.info("hello", n=payload["n"])
    ctx.log.warn("careful")
    return {"n": payload["n"] + 1}


async def test_every_answer_is_the_servers_own_struct(make_node: NodeFactory) -> None:
    node = await make_node(chatty, concurrency=1)
    await node.commands.set_paused("mail", True)
    async with live_server(node) as base, Client(base) as client:
        task_id = await chat.enqueue(client, {"n": 1}, priority=7)  # typed by the handler
        done = await client.wait(task_id, interval=0.01)
        history = await client.history(task_id)
        runs = await client.runs(task_id)
        every_run = await client.list_runs(task_type="chatty", status="completed")
        run = await client.run(f"{task_id}.1")
        logs = await client.logs(task_id)
        stats, workers, queues = await client.stats(), await client.workers(), await client.queues()
        resumed = await client.resume_queue("mail")
        health = await client.health()
    assert (done.status, done.priority, done.result, done.payload) == ("completed", 7, {"n": 2},
                                                                       {"n": 1})
    assert [h.type for h in history][:2] == ["JobEnqueued", "JobPicked"]
    assert isinstance(history[0], HistoryEntry) and history[0].event["payload"] == {"n": 1}
    assert [(r.run_id, r.status) for r in runs] == [(f"{task_id}.1", "COMPLETED")]
    assert every_run == runs and isinstance(run, RunDetail) and run.logs == logs
    assert [(line.level, line.message, line.details) for line in logs] == [
        ("INFO", "hello", {"n": 1}), ("WARN", "careful", {})]
    assert isinstance(stats, Stats) and stats.completed_count == 1
    assert [type(w) for w in workers] == [WorkerInfo] and workers[0].status == "alive"
    assert QueueInfo("mail", True, 0, 0, 0, QueueDepth(0, 0, 0)) in queues
    assert (resumed, health.status) == (QueueToggled("mail", False), "healthy")


async def test_logs_of_a_task_that_never_ran_are_none(make_node: NodeFactory) -> None:
    node = await held(make_node)
    async with live_server(node) as base, Client(base) as client:
        assert await client.logs(await client.submit("echo")) == []


async def test_schedules_come_back_as_schedule_views(make_node: NodeFactory) -> None:
    node = await held(make_node)
    async with live_server(node) as base, Client(base) as client:
        added = await client.add_schedule("tick", "echo", "interval", minutes=5, payload=[1])
        paused = await client.pause_schedule("tick")
        listed = await client.schedules()
        task_id = await client.trigger_schedule("tick")
        await client.remove_schedule("tick")
        task = await client.get(task_id)
    assert isinstance(added, ScheduleView) and added.payload == [1]
    assert (paused.state, [s.id for s in listed]) == ("paused", ["tick"])
    assert task.payload == [1]


# -- listing --------------------------------------------------------------------------------


async def test_list_meets_2500_tasks_once_each_while_others_come_and_go(
    make_node: NodeFactory,
) -> None:
    node = await held(make_node)
    async with live_server(node) as base, Client(base) as client:
        ids = await client.submit_many(task_request("echo", i) for i in range(2_500))
        await settle(node)
        seen: list[str] = []
        async for page in client.pages(status="pending", page_size=300):
            seen += [t.task_id for t in page]
            if len(seen) == 300:
                # Newer tasks, and seen ones leaving the filter: paging by offset would now
                # skip 20 and repeat none; by the last id seen, it does neither.
                await client.submit_many(task_request("echo", i) for i in range(40))
                for task_id in seen[:20]:
                    await client.cancel(task_id)
        every = [t.task_id async for t in client.list(page_size=1000)]
    assert len(seen) == len(set(seen)) == 2_500 and set(seen) == set(ids)
    assert len(every) == len(set(every)) == 2_540
    assert seen == sorted(seen, reverse=True)  # newest first: UUIDv7 ids sort by time


async def test_list_since_stops_at_older_tasks(make_node: NodeFactory) -> None:
    node = await held(make_node)
    async with live_server(node) as base, Client(base) as client:
        old = await client.submit("echo")
        since = datetime.fromisoformat((await client.get(old)).created_at) + timedelta(seconds=1)
        node.clock.advance(5)  # type: ignore[attr-defined]  # a ManualClock
        new = await client.submit("echo")
        listed = [t.task_id async for t in client.list(since=since, page_size=1)]
        page = await client.list_page(limit=1, offset=1)
    assert listed == [new] and [t.task_id for t in page] == [old]


@pytest.mark.parametrize("address", ["127.0.0.1:8080", "127.0.0.1:8080/", "http://127.0.0.1:8080"])
def test_an_address_without_a_scheme_is_http(address: str) -> None:
    assert Client(address).base_url == "http://127.0.0.1:8080"


# -- the commands ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with demo_server(tmp_path_factory.mktemp("client")) as process:
        yield process


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_submit_wait_then_status(server: ServerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "submit", "echo", "--payload", '{"a": 1}', "--priority", "7",
                       "--wait", "--server", server.url)
    done = json.loads(out[out.index("{"):])  # after the id and a line per stage
    assert code == 0
    assert (done["status"], done["result"], done["priority"]) == ("completed", {"a": 1}, 7)
    address = server.url.removeprefix("http://")  # 127.0.0.1:PORT: http:// is assumed
    code, out, _ = run(capsys, "status", done["task_id"], "--server", address)
    assert code == 0 and json.loads(out)["task_id"] == done["task_id"]


@pytest.mark.slow
def test_submit_prints_the_id(server: ServerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "submit", "sleep", "--payload", '{"seconds": 0}',
                       "--server", server.url)
    assert code == 0 and server.http.get(f"/api/v1/tasks/{out.strip()}").status_code == 200


@pytest.mark.slow
def test_status_of_an_unknown_task(
    server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "status", "no-such-task", "--server", server.url)
    assert code == 1 and "(NOT_FOUND)" in err and "no-such-task" in err


def test_bad_arguments_and_no_server(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = run(capsys, "submit", "echo", "--priority", "300", "--server", url)
    assert code == 2 and "priority" in err
    code, _, err = run(capsys, "submit", "echo", "--payload", "{nope", "--server", url)
    assert code == 2 and "--payload is not JSON" in err
    code, _, err = run(capsys, "submit", "echo", "--delay", "-1", "--server", url)
    assert (code, err) == (2, "error: --delay: Expected `float` >= 0.0 (INVALID_ARGUMENT)\n")
    code, _, err = run(capsys, "status", "x", "--server", url)
    assert code == Exit.UNREACHABLE and "cannot reach the server" in err and url in err
