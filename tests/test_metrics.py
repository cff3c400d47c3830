"""GET /metrics: prometheus_client's own parser reads it, and the figures match the node."""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from jobledger.schemas import JOBS, JobStatus
from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext
from tests.support.harness import NodeFactory, advance, enqueue, settle, wait_until
from tests.support.live_server import live_server

app = App()


@app.job("echo")
async def echo(ctx: JobContext, payload: Any) -> Any:
    return payload


@app.job("boom", max_retries=0)
async def boom(ctx: JobContext, payload: Any) -> None:
    raise RuntimeError("boom")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_parse_and_match_the_node(make_node: NodeFactory) -> None:
    node = await make_node(app, concurrency=2)
    async with live_server(node) as base, httpx.AsyncClient(base_url=base) as client:
        done = [await enqueue(node, "echo", i) for i in range(3)]
        failed = await enqueue(node, "boom")
        waiting = await enqueue(node, "echo", "later", delay_seconds=3600)
        for job_id in done:
            await wait_until(node, job_id, JobStatus.COMPLETED)
        await wait_until(node, failed, JobStatus.DEAD_LETTER)
        await advance(node, 1)
        await settle(node)
        assert (await client.get(f"/api/v1/tasks/{done[0]}")).status_code == 200

        response = await client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=")
        got = samples(response.text)

    assert got[("jobledger_tasks", (("status", "completed"), ("task_type", "echo")))] == 3
    assert got[("jobledger_tasks", (("status", "scheduled"), ("task_type", "echo")))] == 1
    assert got[("jobledger_tasks", (("status", "dead_letter"), ("task_type", "boom")))] == 1
    assert got[("jobledger_tasks_pending", ())] == 0
    assert got[("jobledger_workers_connected", ())] == 1
    jobs_records = sum((await node.backend.topic(JOBS).end_offsets()).values())
    assert got[("jobledger_events_appended_total", (("topic", JOBS),))] == jobs_records
    assert got[("jobledger_projection_lag_seconds", ())] == 0
    assert got[("jobledger_job_duration_seconds_count",
                (("outcome", "completed"), ("task_type", "echo")))] == 3
    assert got[("jobledger_job_duration_seconds_count",
                (("outcome", "failed"), ("task_type", "boom")))] == 1
    # Requests are labelled with the route's template, not the id in the path.
    assert got[("jobledger_http_request_duration_seconds_count",
                (("method", "GET"), ("route", "/api/v1/tasks/{task_id}"), ("status", "200")))] == 1
    assert waiting
