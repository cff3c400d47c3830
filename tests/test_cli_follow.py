"""`jobledger logs --follow` (services/cli/runs.py) over WS /ws: each line appears as its run
writes it, and the run is read only when the server says the task changed, never on a timer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from jobledger import Client
from jobledger.schemas import JobStatus
from jobledger.services.cli.common import Exit
from jobledger.services.cli.runs import follow
from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext
from tests.support.harness import NodeFactory, enqueue, wait_until
from tests.support.live_server import live_server

SAFETY = 30.0  # seconds a step may take before the test fails instead of hanging

app = App()
steps: asyncio.Queue[str] = asyncio.Queue()  # the test says when the handler goes on


@app.job("stepwise")
async def stepwise(ctx: JobContext, payload: Any) -> Any:
    for n in range(payload["lines"]):
        await steps.get()
        ctx.log.info(f"line {n}", n=n)
    await steps.get()
    return "done"


class Counted(Client):
    """A client that counts the run reads and the signals they answer."""

    reads = 0
    signals = 0

    async def run(self, run_id: str) -> Any:
        self.reads += 1
        return await super().run(run_id)

    async def task_signals(self, task_id: str, reconnect_for: float = 60.0) -> Any:
        async for signal in super().task_signals(task_id, reconnect_for):
            self.signals += 1
            yield signal


async def printed(capsys: pytest.CaptureFixture[str], count: int) -> list[dict[str, Any]]:
    """The JSON lines follow printed, once there are `count` of them."""
    lines: list[str] = []
    async with asyncio.timeout(SAFETY):
        while len(lines) < count:
            lines += capsys.readouterr().out.splitlines()
            await asyncio.sleep(0.01)
    return [json.loads(line) for line in lines]


async def test_follow_prints_each_line_as_written_and_reads_only_on_a_signal(
        make_node: NodeFactory, capsys: pytest.CaptureFixture[str]) -> None:
    node = await make_node(app)
    async with live_server(node) as base:
        task_id = await enqueue(node, "stepwise", {"lines": 3})
        await wait_until(node, task_id, JobStatus.IN_PROGRESS)
        async with Counted(base) as client:
            following = asyncio.create_task(follow(client, task_id, None, "json"))
            for n in range(3):
                steps.put_nowait("go")
                [line] = await printed(capsys, 1)
                assert (line["message"], line["details"]) == (f"line {n}", {"n": n})
            steps.put_nowait("finish")
            async with asyncio.timeout(SAFETY):
                assert await following == Exit.OK
        # Every read answered a signal: one when subscribed, then one per change told.
        assert client.reads == client.signals
        assert 4 <= client.reads <= 3 + 1 + 3  # lines, then the end; a change may be told twice
