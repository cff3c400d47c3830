"""Unknown task types are refused at the door (services/write/task_types.py): POST /tasks,
the batch endpoint and schedules answer 400 UNKNOWN_TASK_TYPE naming the known types, in
the embedded mode (the server's handlers) and on Kafka API nodes (the types workers
declared); `allow_unknown_task_types` restores the old behaviour; the Python client and
`jobledger submit` show the error; `jobledger serve` without handlers warns."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobledger.services.cli.kafka import node_config_for
from jobledger.services.cli.main import build_parser, main
from jobledger.services.client.async_client import Client, ClientError
from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext
from jobledger.services.node.base import Node
from jobledger.services.node.embedded import EmbeddedNode, NodeConfig
from jobledger.services.runtime.clock import ManualClock
from jobledger.services.runtime.dispatcher import DispatcherConfig
from jobledger.services.write.producer import task_request
from jobledger.services.write.task_types import UnknownTaskType
from tests.support.api_harness import api_client, assert_error, handlers, submit
from tests.support.harness import NodeFactory, wait_until
from tests.support.kafka_broker import TansuBroker
from tests.support.kafka_harness import kafka_config, node_config, started
from tests.support.live_server import live_server
from tests.support.procs import ServerProcess

KNOWN = "block, broken, echo"  # the handlers of tests/support/api_harness.py, sorted
KAFKA_WAIT_S = 30.0  # real time: the worker's group join and the API node's projections


@pytest.fixture
async def node(make_node: NodeFactory) -> EmbeddedNode:
    return await make_node(handlers)




async def listed(client: httpx.AsyncClient) -> list[Any]:
    return (await client.get("/api/v1/tasks")).json()  # type: ignore[no-any-return]


# -- the embedded mode -------------------------------------------------------------------


async def test_an_unknown_type_answers_400_naming_the_known_ones(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/api/v1/tasks", json={"task_type": "ecko"})
    error = assert_error(response, 400, "UNKNOWN_TASK_TYPE", "task_type")
    assert "'ecko'" in error["error"] and f"known task types are: {KNOWN} " in error["error"]
    assert "--allow-unknown-task-types" in error["error"]
    assert await listed(client) == []


async def test_one_unknown_type_refuses_the_whole_batch_naming_its_place(
    client: httpx.AsyncClient,
) -> None:
    tasks = [{"task_type": "echo"}, {"task_type": "echo"}, {"task_type": "ecko"}]
    response = await client.post("/api/v1/tasks/batch", json={"tasks": tasks})
    error = assert_error(response, 400, "UNKNOWN_TASK_TYPE", "tasks[2].task_type")
    assert KNOWN in error["error"]
    assert await listed(client) == []  # all or none


async def test_a_schedule_of_an_unknown_type_is_refused_when_defined_or_changed(
    client: httpx.AsyncClient,
) -> None:
    schedule = {"id": "tick", "trigger": "interval", "seconds": 60}
    response = await client.post("/api/v1/schedules", json={**schedule, "task_type": "ecko"})
    assert_error(response, 400, "UNKNOWN_TASK_TYPE", "task_type")
    response = await client.post("/api/v1/schedules", json={**schedule, "task_type": "echo"})
    assert response.status_code == 201, response.text
    response = await client.put("/api/v1/schedules/tick", json={"task_type": "ecko"})
    assert_error(response, 400, "UNKNOWN_TASK_TYPE", "task_type")
    response = await client.put("/api/v1/schedules/tick", json={"task_type": "block"})
    assert response.status_code == 200 and response.json()["task_type"] == "block"


async def test_allowing_unknown_types_accepts_them_and_they_fail_when_picked(
    make_node: NodeFactory,
) -> None:
    node = await make_node(handlers, allow_unknown_task_types=True)
    async with api_client(node) as client:
        task_id = await submit(client, task_type="ecko")
        batch = await client.post("/api/v1/tasks/batch", json={"tasks": [{"task_type": "ecko"}]})
        assert batch.status_code == 201
    failed = await wait_until(node, task_id, "failed")
    assert failed.error is not None and "'ecko'" in failed.error


async def test_a_server_without_workers_accepts_the_types_of_its_app(tmp_path: Path) -> None:
    config = NodeConfig(db=tmp_path / "j.db", run_workers=False)
    async with EmbeddedNode(config, handlers, ManualClock()) as node:
        async with api_client(node) as client:
            response = await client.post("/api/v1/tasks", json={"task_type": "echo"})
            assert (response.status_code, response.json()["status"]) == (201, "pending")
            response = await client.post("/api/v1/tasks", json={"task_type": "ecko"})
            assert_error(response, 400, "UNKNOWN_TASK_TYPE", "task_type")


# -- the Python client and the CLI ---------------------------------------------------------


async def test_the_client_raises_the_code_and_submit_prints_the_known_types(
    node: EmbeddedNode, capsys: pytest.CaptureFixture[str],
) -> None:
    async with live_server(node) as base:
        async with Client(base) as client:
            with pytest.raises(ClientError) as refused:
                await client.submit("ecko")
        code = await asyncio.to_thread(main, ["submit", "ecko", "--server", base])
    error = refused.value
    assert (error.status, error.code, error.field) == (400, "UNKNOWN_TASK_TYPE", "task_type")
    assert KNOWN in str(error)
    assert code != 0
    [line] = capsys.readouterr().err.splitlines()
    assert "'ecko'" in line and KNOWN in line and "UNKNOWN_TASK_TYPE" in line


def test_the_flag_and_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = build_parser()
    assert parser.parse_args(["serve"]).allow_unknown_task_types is False
    assert parser.parse_args(["serve", "--allow-unknown-task-types"]).allow_unknown_task_types
    monkeypatch.setenv("JOBLEDGER_ALLOW_UNKNOWN_TASK_TYPES", "1")
    assert build_parser().parse_args(["serve"]).allow_unknown_task_types is True
    args = build_parser().parse_args(["api", "--broker", "kafka://127.0.0.1:9092"])
    assert node_config_for(args).allow_unknown_task_types is True


@pytest.mark.slow
def test_serve_without_handlers_warns_once_at_start(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "j.db", "--allow-unknown-task-types")
    try:
        server.wait_healthy()
        response = server.http.post("/api/v1/tasks", json={"task_type": "ecko"})
        assert response.status_code == 201  # allowed: it waits for a server with a handler
        warnings = [line for line in server.output().splitlines() if "no task types" in line]
        assert warnings == ["jobledger: warning: no task types: this server has no handlers "
                            "(give --app module:attribute, or --demo)"]
    finally:
        server.stop()
    demo = ServerProcess(tmp_path / "demo.db", "--demo")
    try:
        demo.wait_healthy()
        assert "no task types" not in demo.output()
    finally:
        demo.stop()


# -- the Kafka mode ------------------------------------------------------------------------


def _noop_app() -> App:
    app = App()

    @app.job("noop")
    async def noop(ctx: JobContext, payload: Any) -> None:
        return None

    return app


@pytest.fixture
async def kafka_nodes() -> AsyncIterator[list[Node]]:
    running: list[Node] = []
    yield running
    for node in reversed(running):
        await node.stop()


async def test_kafka_a_type_is_known_once_a_worker_declared_it(
    tmp_path: Path, kafka_broker: TansuBroker, kafka_nodes: list[Node],
) -> None:
    config = kafka_config(kafka_broker)
    api = await started(node_config(config, tmp_path / "api.db"))  # `jobledger api`: no handlers
    kafka_nodes.append(api)
    async with api_client(api) as client:  # type: ignore[arg-type]
        response = await client.post("/api/v1/tasks", json={"task_type": "noop"})
        error = assert_error(response, 400, "UNKNOWN_TASK_TYPE", "task_type")
        assert "known task types are: none yet" in error["error"]

        worker_config = node_config(
            config, tmp_path / "w.db", run_projections=False, run_workers=True,
            dispatcher=DispatcherConfig(shutdown_grace_seconds=0.0))
        kafka_nodes.append(await started(worker_config, _noop_app()))  # declares noop
        assert await api.caught_up(KAFKA_WAIT_S)  # its WorkerStarted is in the read models

        task_id = await submit(client, task_type="noop")
        response = await client.post("/api/v1/tasks", json={"task_type": "ecko"})
        error = assert_error(response, 400, "UNKNOWN_TASK_TYPE", "task_type")
        assert "known task types are: noop " in error["error"]
    await wait_until(api, task_id, "completed", KAFKA_WAIT_S)  # type: ignore[arg-type]


async def test_kafka_allowing_unknown_types_accepts_them_before_any_worker(
    tmp_path: Path, kafka_broker: TansuBroker, kafka_nodes: list[Node],
) -> None:
    config = kafka_config(kafka_broker)
    api = await started(node_config(config, tmp_path / "api.db", allow_unknown_task_types=True))
    kafka_nodes.append(api)
    [enqueued] = await api.commands.enqueue([task_request("noop")])
    assert enqueued.created
    strict = await started(node_config(config, tmp_path / "strict.db"))
    kafka_nodes.append(strict)
    with pytest.raises(UnknownTaskType) as refused:
        await strict.commands.enqueue([task_request("noop")])
    assert refused.value.known == []

