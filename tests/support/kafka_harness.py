"""Kafka-mode nodes for tests: settings that suit the test broker, and in-process nodes.

The test broker cannot do idempotent producers (docs/kafka.md), and group joins and
rebalances take about one session timeout, so tests use short ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobledger.services.handlers.app import App
from jobledger.services.kafka.ownership import GroupSettings
from jobledger.services.log.kafka import KafkaConfig
from jobledger.services.node.kafka import KafkaNode, KafkaNodeConfig
from jobledger.services.runtime.clock import Clock
from tests.support.kafka_broker import TansuBroker, unique_prefix

SESSION_TIMEOUT_MS = 1500  # a killed member's partitions move after about this long
PARTITIONS = 4


def kafka_config(broker: TansuBroker, prefix: str | None = None, **overrides: Any) -> KafkaConfig:
    settings: dict[str, Any] = {
        "bootstrap_servers": broker.bootstrap,
        "topic_prefix": prefix or unique_prefix(),
        "partitions": PARTITIONS,
        "idempotent": False,  # the test broker refuses InitProducerId
        "request_timeout_ms": 10_000,
    }
    return KafkaConfig(**{**settings, **overrides})


def node_config(kafka: KafkaConfig, views: Path, **overrides: Any) -> KafkaNodeConfig:
    """An API node (projections only) unless overridden."""
    settings: dict[str, Any] = {
        "kafka": kafka, "views": views, "run_workers": False, "run_scheduler": False,
        "group": GroupSettings(SESSION_TIMEOUT_MS), "catch_up_seconds": 30.0,
        # Recorded histories name workers that never joined a group: keep them as recorded.
        "mark_lost_workers": False,
    }
    return KafkaNodeConfig(**{**settings, **overrides})


async def started(config: KafkaNodeConfig, app: App | None = None,
                  clock: Clock | None = None) -> KafkaNode:  # fmt: skip
    node = KafkaNode(config, app or App(), clock)
    await node.start()
    return node
