"""Idempotency keys through a real EmbeddedNode: one key makes one job that runs once,
whether repeated while the job waits, after it finished, or after a restart (when the
dispatcher has forgotten it and asks the read model)."""

from __future__ import annotations

from jobledger.schemas import JobStatus, RunStatus
from jobledger.services.runtime.clock import ManualClock
from jobledger.services.write.producer import job_id_for_key, task_request
from tests.support.harness import NodeFactory, enqueue, job, recording_app, runs, settle, wait_until

S = JobStatus
R = RunStatus


async def test_enqueueing_twice_with_one_key_makes_one_job_that_runs_once(
    make_node: NodeFactory,
) -> None:
    app, ran, release = recording_app()
    node = await make_node(app, concurrency=1)
    blocker = await enqueue(node, "blocker")
    await wait_until(node, blocker, S.IN_PROGRESS)
    request = task_request("record", "once", idempotency_key="order-42")

    [first] = await node.commands.enqueue([request])
    [second] = await node.commands.enqueue([request])

    assert first.task_id == second.task_id == job_id_for_key("order-42")
    assert (first.created, second.created) == (True, False)
    release.set()
    await wait_until(node, first.task_id, S.COMPLETED)
    await settle(node)
    assert ran == ["once"]
    rows = await node.queries.db.execute_fetchall(
        "SELECT COUNT(*) FROM jobs WHERE idempotency_key = 'order-42'"
    )
    assert rows[0][0] == 1


async def test_a_repeated_key_after_the_job_finished_does_not_run_it_again(
    make_node: NodeFactory,
) -> None:
    app, ran, _ = recording_app()
    node = await make_node(app)
    request = task_request("record", "once", idempotency_key="invoice-7")
    [first] = await node.commands.enqueue([request])
    done = await wait_until(node, first.task_id, S.COMPLETED)

    [again] = await node.commands.enqueue([request])
    await settle(node)

    assert (again.task_id, again.created, again.status) == (first.task_id, False, S.COMPLETED)
    assert ran == ["once"]
    assert await job(node, first.task_id) == done
    assert [(a, s) for a, s, _ in await runs(node, first.task_id)] == [(1, R.COMPLETED)]


async def test_a_repeated_key_after_a_restart_does_not_run_the_job_again(
    make_node: NodeFactory,
) -> None:
    app, ran, _ = recording_app()
    clock = ManualClock()
    first = await make_node(app, clock=clock)
    request = task_request("record", "once", idempotency_key="invoice-8")
    [enqueued] = await first.commands.enqueue([request])
    await wait_until(first, enqueued.task_id, S.COMPLETED)
    await make_node.stop(first)

    second = await make_node(app, clock=clock)
    [again] = await second.commands.enqueue([request])
    await settle(second)

    assert (again.task_id, again.created) == (enqueued.task_id, False)
    assert ran == ["once"]
