"""as_of on a Kafka API node (docs/audit.md, "Point in time"): it takes the same snapshots as
the embedded node, and an as_of from them equals what the live read models answered."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from jobledger.services.handlers.app import App
from jobledger.services.history.position import format_position
from jobledger.services.node.kafka import KafkaNode
from jobledger.services.runtime.projector import TOPIC_OF_MODEL
from jobledger.services.write.producer import task_request
from tests.support.kafka_broker import TansuBroker
from tests.support.kafka_harness import kafka_config, node_config, started

app = App()


@app.job("noop")
async def noop(payload: Any) -> None:
    return None


async def _answers(node: KafkaNode, position: str, live: bool) -> Any:
    moment = await node.history.moment(position)
    if live:
        return await node.queries.stats(moment.time_ms), await node.queries.jobs(limit=100)
    async with node.history.at(moment) as then:
        return await then.stats(moment.time_ms), await then.jobs(limit=100)


async def test_a_kafka_api_node_answers_as_of_from_its_snapshots(
    tmp_path: Path, kafka_broker: TansuBroker,
) -> None:
    # A delta every 4 records, a new base once a base's deltas hold 3 jobs rows.
    config = node_config(kafka_config(kafka_broker), tmp_path / "api.db",
                         snapshot_every_events=4, snapshot_base_after_rows=3)
    node = await started(config, app)
    try:
        recorded = []
        for step in range(8):
            await node.commands.enqueue([task_request("noop", step)], wait_visible=True)
            assert await node.caught_up(20)
            ends = {topic: await node.backend.topic(topic).end_offsets()
                    for topic in TOPIC_OF_MODEL.values()}
            position = format_position(ends)
            recorded.append((position, await _answers(node, position, live=True)))
        assert node.history.snapshots is not None
        async with asyncio.timeout(20):  # snapshots are taken in threads
            while not any(s.seq for s in node.history.snapshots.taken):
                await asyncio.sleep(0.05)
        from_snapshots = 0
        for position, live in recorded:
            moment = await node.history.moment(position)
            from_snapshots += node.history.starting_point(moment.positions) is not None
            assert await _answers(node, position, live=False) == live
        assert from_snapshots >= 2
    finally:
        await node.stop()
