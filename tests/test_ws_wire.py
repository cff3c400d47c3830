"""api/ws_wire.py: the senders' turns (round robin, as many a pass of the event loop as fit
the slice), and the hub under an ASGI server without the frames extension (one
websocket.send a message)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from jobledger.api.app import create_app, serving
from jobledger.api.ws_wire import Turns
from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext
from tests.support.harness import NodeFactory, enqueue, settle

app = App()


@app.job("echo")
async def echo(ctx: JobContext, payload: Any) -> Any:
    return payload


class Passes:
    """Counts the passes of the event loop: a task that yields once a pass."""

    def __init__(self) -> None:
        self.count = 0
        self.task = asyncio.ensure_future(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0)
            self.count += 1


async def take_turns(turns: Turns, key: str, times: int, log: list[tuple[str, int]],
                     passes: Passes, cost: float = 0.0, clock: list[float] | None = None) -> None:
    """A sender with `times` batches to send, each taking `cost` of the fake clock."""
    turns.ready(key)
    for done in range(times):
        await turns.take(key)
        log.append((key, passes.count))
        if clock is not None:
            clock[0] += cost
        if done + 1 < times:
            turns.ready(key)


def turns_per_pass(log: list[tuple[str, int]]) -> list[int]:
    """How many turns each pass held, in order (passes with none left out)."""
    per_pass: dict[int, int] = {}
    for _, at in log:
        per_pass[at] = per_pass.get(at, 0) + 1
    return [per_pass[at] for at in sorted(per_pass)]


async def test_turns_go_round_robin() -> None:
    turns, passes, log = Turns(slice_s=1.0), Passes(), []
    await asyncio.gather(*(take_turns(turns, key, 3, log, passes) for key in "abc"))
    passes.task.cancel()
    assert [key for key, _ in log] == list("abcabcabc")


async def test_a_pass_holds_as_many_turns_as_fit_the_slice() -> None:
    """Turns of 1 ms in a slice of 4 ms: 4 turns a pass, so that a request waits for 4 ms
    of fan-out, not for every client. The first pass grants 16 (nothing is timed yet), and
    the 12 that find the slice spent give their places back, first in line."""
    clock = [0.0]
    turns, passes, log = Turns(slice_s=0.004, clock=lambda: clock[0]), Passes(), []
    await asyncio.gather(*(take_turns(turns, f"client{n}", 3, log, passes, 0.001, clock)
                           for n in range(40)))
    passes.task.cancel()
    counts = turns_per_pass(log)
    assert set(counts) == {4} and sum(counts) == 120, counts
    assert [key for key, _ in log[:8]] == [f"client{n}" for n in range(8)]  # still in order


async def test_the_turns_of_a_pass_grow_at_most_twofold() -> None:
    """Cheap turns of one client alone say nothing of a burst: when 60 clients are ready
    at once, the passes grant 2, 4, 8, ... turns, not all 60 at the first."""
    clock = [0.0]
    turns, passes, log = Turns(slice_s=0.004, clock=lambda: clock[0]), Passes(), []
    await take_turns(turns, "alone", 5, log, passes, 0.00001, clock)
    log.clear()
    await asyncio.gather(*(take_turns(turns, f"client{n}", 1, log, passes, 0.0001, clock)
                           for n in range(60)))
    passes.task.cancel()
    assert turns_per_pass(log) == [2, 4, 8, 16, 30]


async def test_without_the_frames_extension_each_message_is_a_websocket_send(
    make_node: NodeFactory,
) -> None:
    """Under an ASGI server other than jobledger's uvicorn protocol (Starlette's TestClient,
    hypercorn), the hub sends each message as a text websocket.send."""
    node = await make_node(app)
    web = create_app(lambda: node)
    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outgoing: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "websocket", "path": "/ws", "raw_path": b"/ws", "root_path": "",
             "headers": [], "query_string": b"", "scheme": "ws", "server": ("test", 80),
             "client": ("test", 1), "subprotocols": [], "asgi": {"version": "3.0"},
             "extensions": {"websocket.http.response": {}}}
    async with serving(web, node):
        connection = asyncio.ensure_future(web(scope, incoming.get, outgoing.put))
        await incoming.put({"type": "websocket.connect"})
        assert (await outgoing.get())["type"] == "websocket.accept"
        await incoming.put({"type": "websocket.receive", "text": '{"type": "subscribe"}'})
        subscribed = await outgoing.get()
        assert subscribed["type"] == "websocket.send"
        assert json.loads(subscribed["text"])["type"] == "subscribed"
        task_id = await enqueue(node, "echo", delay_seconds=60)
        await settle(node)
        update = await outgoing.get()
        assert update["type"] == "websocket.send"
        assert json.loads(update["text"])["task"]["task_id"] == task_id
        await incoming.put({"type": "websocket.disconnect", "code": 1000})
        await connection
