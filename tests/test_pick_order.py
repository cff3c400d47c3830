"""The order the dispatcher picks in, through a real EmbeddedNode (the ReadySet's order and
paused queues): higher priority first, then enqueue order; a paused queue waits until
resumed. The unit tests of the ReadySet itself are in test_ready_set.py."""

from __future__ import annotations

import pytest

from jobledger.schemas import JobStatus
from tests.support.harness import (
    NodeFactory,
    advance,
    enqueue,
    job,
    recording_app,
    settle,
    wait_until,
)

S = JobStatus


async def test_higher_priority_runs_first(make_node: NodeFactory) -> None:
    app, ran, release = recording_app()
    node = await make_node(app, concurrency=1)
    blocker = await enqueue(node, "blocker")
    await wait_until(node, blocker, S.IN_PROGRESS)

    ids = [await enqueue(node, "record", p, priority=p) for p in (10, 200, 128)]
    await settle(node)
    assert [(await job(node, i)).status for i in ids] == [S.PENDING] * 3
    release.set()

    for job_id in ids:
        await wait_until(node, job_id, S.COMPLETED)
    assert ran == [200, 128, 10]


@pytest.mark.parametrize(
    ("partitions", "apart"),
    [(1, 0.0), (4, 0.001)],
    ids=["one-partition-one-instant", "four-partitions-1ms-apart"],
)
async def test_equal_priorities_run_in_enqueue_order(
    make_node: NodeFactory, partitions: int, apart: float
) -> None:
    """Within a partition the log orders enqueues; across partitions only created_at can,
    and it has millisecond resolution (enqueues within one millisecond on different
    partitions have no order to keep), so there the enqueues are 1 ms apart."""
    app, ran, release = recording_app()
    node = await make_node(app, concurrency=1, partitions=partitions)
    blocker = await enqueue(node, "blocker")
    await wait_until(node, blocker, S.IN_PROGRESS)

    names = [f"job-{i}" for i in range(8)]  # with four partitions, several share each one
    ids = []
    for name in names:
        ids.append(await enqueue(node, "record", name, priority=50))
        if apart:
            await advance(node, apart)
    await settle(node)
    release.set()

    for job_id in ids:
        await wait_until(node, job_id, S.COMPLETED)
    assert ran == names


async def test_a_paused_queue_is_not_picked_until_resumed(make_node: NodeFactory) -> None:
    app, ran, _ = recording_app()
    node = await make_node(app)
    await node.commands.set_paused("reports", True)

    held = await enqueue(node, "record", "report", queue="reports")
    free = await enqueue(node, "record", "email")
    await wait_until(node, free, S.COMPLETED)
    await advance(node, 30)
    assert ran == ["email"]
    assert (await job(node, held)).status == S.PENDING

    await node.commands.set_paused("reports", False)

    await wait_until(node, held, S.COMPLETED)
    assert ran == ["email", "report"]
