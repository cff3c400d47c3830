"""projections/queries.py: every answer is a schemas/api.py Struct whose statuses are enum
members (schemas/lifecycle.py), built from the read model's rows, never a dict of strings."""

from __future__ import annotations

from typing import Any

import msgspec

from jobledger.schemas import JobStatus, RunStatus, ScheduleStatus, WorkerStatus
from jobledger.schemas.api import QueueDepth, QueueInfo, RunDetail, Stats, TaskDetail, WorkerInfo
from jobledger.schemas.common import to_ms
from jobledger.schemas.schedules import ScheduleRequest
from jobledger.services.node.embedded import EmbeddedNode
from tests.support.api_harness import handlers
from tests.support.harness import NodeFactory, enqueue, settle, wait_until


def statuses(answer: Any) -> list[tuple[str, object]]:
    """(field, value) of every status field in an answer (Structs, lists, tuples, dicts)."""
    found: list[tuple[str, object]] = []
    if isinstance(answer, msgspec.Struct):
        for name in answer.__struct_fields__:
            value = getattr(answer, name)
            if name in ("status", "state", "last_status") and value is not None:
                found.append((name, value))
            found += statuses(value)
    elif isinstance(answer, list | tuple):
        for item in answer:
            found += statuses(item)
    elif isinstance(answer, dict):
        for item in answer.values():
            found += statuses(item)
    return found


async def a_bit_of_everything(node: EmbeddedNode) -> dict[str, str]:
    done = await enqueue(node, "echo", {"n": 1})
    failed = await enqueue(node, "broken", queue="b")
    later = await enqueue(node, "echo", delay_seconds=60)
    await wait_until(node, done, JobStatus.COMPLETED)
    await wait_until(node, failed, JobStatus.FAILED)
    await node.schedules.define(ScheduleRequest(id="tick", task_type="echo", trigger="manual"))
    fired = await node.schedules.trigger("tick")
    await wait_until(node, fired, JobStatus.COMPLETED)
    await node.commands.set_paused("b", True)
    await settle(node)
    return {"done": done, "failed": failed, "later": later}


async def test_every_answer_is_a_struct_with_enum_statuses(make_node: NodeFactory) -> None:
    node = await make_node(handlers)
    ids = await a_bit_of_everything(node)
    q = node.queries
    detail = await q.task(ids["done"])
    run = await q.run(f"{ids['failed']}.1")
    answers: dict[str, Any] = {
        "task": detail, "jobs": await q.jobs(), "runs": await q.runs(),
        "runs_of": await q.runs_of(ids["failed"]), "run": run, "workers": await q.workers(),
        "queues": await q.queues(), "stats": await q.stats(to_ms(node.clock.now())),
        "schedules": await q.schedules(),
        "changed_since": await q.changed_since(0, 0, None, 100),
        "job_statuses": await q.job_statuses(ids.values()),
    }
    assert isinstance(detail, TaskDetail) and isinstance(run, RunDetail)
    assert all(isinstance(w, WorkerInfo) for w in answers["workers"])
    assert all(isinstance(x, QueueInfo) for x in answers["queues"])
    assert isinstance(answers["stats"], Stats)
    seen = statuses(answers) + [("status", s) for s in answers["job_statuses"].values()]
    assert {type(value) for _, value in seen} == {
        JobStatus, RunStatus, WorkerStatus, ScheduleStatus}
    assert (detail.status, run.status) == (JobStatus.COMPLETED, RunStatus.FAILED)
    assert answers["workers"][0].status is WorkerStatus.ALIVE
    [schedule] = answers["schedules"]
    assert (schedule.state, schedule.last_status) == (ScheduleStatus.ACTIVE, JobStatus.COMPLETED)
    assert answers["job_statuses"][ids["later"]] is JobStatus.SCHEDULED


async def test_queues_and_stats_count_by_status(make_node: NodeFactory) -> None:
    node = await make_node(handlers)
    ids = await a_bit_of_everything(node)
    queues = {x.queue: x for x in await node.queries.queues()}
    none = QueueDepth(0, 0, 0)
    assert queues == {"b": QueueInfo("b", True, 0, 0, 0, none),
                      "default": QueueInfo("default", False, 0, 1, 0, none)}
    stats = await node.queries.stats(to_ms(node.clock.now()))
    assert (stats.completed_count, stats.failed_count, stats.scheduled_count) == (2, 1, 1)
    assert (stats.completed_last_hour, stats.failed_last_hour, stats.worker_count) == (2, 1, 1)
    assert await node.queries.finished(ids.values()) == {ids["done"], ids["failed"]}
