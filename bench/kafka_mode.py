"""jobledger in Kafka mode. NOT YET MEASURED: the Kafka backend is being built.

To measure it, implement this Mode (bench/ledger.py says what each method does) and drop
`unavailable`: every jobledger workload and the shared ones then run in Kafka mode too, in
the "jobledger (Kafka)" column. The issue asks for the test broker (tests/kafka_broker.py)
and two worker processes in the drain (worker_processes = 2: serve() should start them)."""

from __future__ import annotations

from typing import Any

from .ledger import Mode


class KafkaMode(Mode):
    key = "jobledger-kafka"
    label = "jobledger (Kafka)"
    worker_processes = 2

    def unavailable(self) -> str | None:
        return "not yet measured: the Kafka backend is being built"

    def settings(self) -> dict[str, Any]:
        return {"status": "stub"}
