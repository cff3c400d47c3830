"""Driving a real EmbeddedNode from tests: SQLite files in tmp_path, a ManualClock, no sleeps.

Time moves only when a test calls `advance`. Between two steps the harness waits for the
node to go quiet (`settle`): everything published is durable, and the dispatcher and the
projections have read every topic to its end. A real-time bound (asyncio.wait_for) wraps
every wait as a safety net, so a broken node fails a test instead of hanging it; it is
never what a test synchronises on.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from jobledger.projections.jobs import JobState
from jobledger.schemas import JOBS, Envelope, JobStatus, decode
from jobledger.schemas.common import to_ms
from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext
from jobledger.services.node.embedded import EmbeddedNode, NodeConfig
from jobledger.services.runtime.backoff import Backoff
from jobledger.services.runtime.clock import ManualClock
from jobledger.services.runtime.dispatcher import Dispatcher, DispatcherConfig
from jobledger.services.runtime.projector import TOPIC_OF_MODEL
from jobledger.services.telemetry.setup import Telemetry
from jobledger.services.write.producer import task_request

SAFETY_SECONDS = 5.0  # real time; only ever reached when something is broken
BACKOFF_SEED = 1234
JobPredicate = Callable[[JobState], bool]
_MODELS = tuple(TOPIC_OF_MODEL.items())


class NodeFactory:
    """Starts EmbeddedNodes over tmp_path/'j.db' and stops whichever are left at teardown."""

    def __init__(self, tmp_path: Path):
        self.db = tmp_path / "j.db"
        self._running: list[EmbeddedNode] = []

    async def __call__(
        self, app: App, *, clock: ManualClock | None = None, partitions: int = 4,
        allow_unknown_task_types: bool = False, telemetry: Telemetry | None = None,
        **dispatcher_config: Any,
    ) -> EmbeddedNode:
        """A started node. Dispatcher options as keywords (concurrency=1, lease_seconds=...);
        the backoff is seeded and the shutdown grace is 0 unless given."""
        dispatcher_config.setdefault("backoff", seeded_backoff())
        # The grace is real time (asyncio.wait's timeout): a test must not wait it out.
        dispatcher_config.setdefault("shutdown_grace_seconds", 0.0)
        config = NodeConfig(
            db=self.db, partitions=partitions, dispatcher=DispatcherConfig(**dispatcher_config),
            allow_unknown_task_types=allow_unknown_task_types, telemetry=telemetry,
        )
        node = EmbeddedNode(config, app, clock=clock or ManualClock())
        await node.start()
        self._running.append(node)
        return node

    async def stop(self, node: EmbeddedNode) -> None:
        self._running.remove(node)
        await node.stop()

    async def close(self) -> None:
        while self._running:
            await self._running.pop().stop()


def seeded_backoff(seed: int = BACKOFF_SEED) -> Backoff:
    """The backoff a node gets by default; a second one with the same seed predicts it."""
    return Backoff(rng=random.Random(seed))


def clock_of(node: EmbeddedNode) -> ManualClock:
    assert isinstance(node.clock, ManualClock), "the harness drives nodes by a ManualClock"
    return node.clock


def dispatcher_of(node: EmbeddedNode) -> Dispatcher:
    assert node.dispatcher is not None, "this node runs no workers"
    return node.dispatcher


async def enqueue(node: EmbeddedNode, task_type: str, payload: Any = None, **options: Any) -> str:
    """Enqueue one job through the node's commands; its id."""
    [enqueued] = await node.commands.enqueue([task_request(task_type, payload, **options)])
    return enqueued.task_id


async def job(node: EmbeddedNode, job_id: str) -> JobState:
    """The job as the read model has it now."""
    state = await node.queries.job(job_id)
    assert state is not None, f"no job {job_id} in the read model"
    return state


async def wait_until(
    node: EmbeddedNode, job_id: str, want: JobPredicate | JobStatus | str,
    timeout: float = SAFETY_SECONDS,
) -> JobState:
    """The job's projected state once it satisfies `want` (a predicate or a status).

    Watches before it looks, so a change that lands between the look and the watch is not
    missed. Only the state at the end of each projected batch is seen: wait for states the
    job stays in, not ones it may pass through within a batch."""
    predicate: JobPredicate = want if callable(want) else _has_status(JobStatus(want))
    future = node.projector.watch_job(job_id, predicate)
    try:
        current = await node.queries.job(job_id)
        if current is not None and predicate(current):
            return current
        return await asyncio.wait_for(future, timeout)
    except TimeoutError:
        now = await node.queries.job(job_id)
        raise AssertionError(f"job {job_id} never got to {want!r}; it is {now!r}") from None
    finally:
        future.cancel()


def _has_status(status: JobStatus) -> JobPredicate:
    return lambda state: state.status == status


async def settle(node: EmbeddedNode, timeout: float = SAFETY_SECONDS) -> None:
    """Wait until the node is quiet: nothing left to publish, and the dispatcher and every
    projection have applied each topic up to its end, twice in a row with nothing new."""
    await asyncio.wait_for(_settle(node), timeout)


async def _settle(node: EmbeddedNode) -> None:
    dispatcher = dispatcher_of(node)
    previous: dict[str, dict[int, int]] | None = None
    while True:
        # Let woken tasks (timers, heartbeats, handlers, picks) run up to their next await.
        for _ in range(20):
            await asyncio.sleep(0)
        await dispatcher.publisher.drain()
        await node.publisher.drain()
        ends = {topic: await node.backend.topic(topic).end_offsets() for _, topic in _MODELS}
        for model, topic in _MODELS:
            for partition, end in ends[topic].items():
                if end:
                    await node.projector.wait_for(model, partition, end - 1)
        mine = {p: end for p, end in ends[JOBS].items() if p in dispatcher.partitions}
        # The dispatcher has no notification of its own; poll its positions, yielding.
        while any(dispatcher.positions.get(p, 0) < end for p, end in mine.items()):
            await asyncio.sleep(0)
        if ends == previous:
            return
        previous = ends


async def advance(node: EmbeddedNode, seconds: float, step: float | None = None) -> None:
    """Move the node's ManualClock on by `seconds`, in steps no longer than the heartbeat
    interval (the default step), settling after each step.

    One jump past a lease would wake the lease timer and the heartbeat that renews it at
    the same instant; in steps, each heartbeat is read back before the next step."""
    clock = clock_of(node)
    heartbeat = dispatcher_of(node).config.heartbeat_every
    step = heartbeat if step is None else step
    assert 0 < step <= heartbeat, f"step {step} s is longer than the heartbeat ({heartbeat} s)"
    await settle(node)
    left = seconds
    while left > 1e-9:
        moved = min(step, left)
        clock.advance(moved)
        left -= moved
        await settle(node)


async def runs(node: EmbeddedNode, job_id: str) -> list[tuple[int, str, str | None]]:
    """(attempt, status, error) of every run of the job, in attempt order."""
    rows = await node.queries.db.execute_fetchall(
        "SELECT attempt, status, error FROM runs WHERE job_id = ? ORDER BY attempt", (job_id,)
    )
    return [(a, s, e) for a, s, e in rows]


async def logs(node: EmbeddedNode, job_id: str) -> list[tuple[int, str, str, Any]]:
    """(attempt, level, message, details) of every log line of the job, in log order."""
    rows = await node.queries.db.execute_fetchall(
        "SELECT attempt, level, message, details FROM run_logs WHERE job_id = ?"
        " ORDER BY partition, offset",
        (job_id,),
    )
    return [(a, lvl, m, msgspec.json.decode(d)) for a, lvl, m, d in rows]


async def history(node: EmbeddedNode, job_id: str) -> list[Envelope]:
    """Every event of the job on the jobs topic, in log order (the log, not a projection)."""
    log = node.backend.topic(JOBS)
    partition = log.partition_for(job_id)
    end = (await log.end_offsets())[partition]
    records = await log.read(partition, 0, limit=end + 1)
    envs = [decode(r.value) for r in records if r.key == job_id]
    return envs


# -- apps and predicates the dispatcher's tests share -----------------------------------


def recording_app() -> tuple[App, list[Any], asyncio.Event]:
    """An App with "record" (appends its payload to the list) and "blocker" (waits for the
    event), so a test can hold the only worker slot and see what runs after."""
    app = App()
    ran: list[Any] = []
    release = asyncio.Event()

    @app.job("record")
    async def record(ctx: JobContext, payload: Any) -> Any:
        ran.append(payload)
        return payload

    @app.job("blocker")
    async def blocker(ctx: JobContext, payload: Any) -> None:
        await release.wait()

    return app, ran, release


def attempt_is(attempt: int, status: JobStatus) -> JobPredicate:
    return lambda s: s.attempt == attempt and s.status == status


async def until_due(node: EmbeddedNode, state: JobState, extra: float = 0.01) -> None:
    """Advance the clock just past the job's run_at."""
    assert state.run_at is not None
    await advance(node, (state.run_at - to_ms(clock_of(node).now())) / 1000 + extra)
