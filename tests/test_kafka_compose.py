"""compose/docker-compose.yml cannot run here (no Docker engine), so it is read against the
commands it runs: every jobledger service's command, with its environment, parses with
today's CLI and gives the node the deployment means."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from jobledger.services.cli.auth import security_settings
from jobledger.services.cli.kafka import node_config_for
from jobledger.services.cli.main import build_parser

COMPOSE = Path(__file__).parent.parent / "compose" / "docker-compose.yml"


def _services() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(COMPOSE.read_text())["services"]  # type: ignore[no-any-return]


def _jobledger(name: str, service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    for key, value in service["environment"].items():
        monkeypatch.setenv(key, str(value))
    args = build_parser().parse_args(service["command"])
    return args, node_config_for(args)


def test_three_kafka_brokers_in_kraft_mode() -> None:
    brokers = {n: s for n, s in _services().items() if s["image"].startswith("apache/kafka")}
    assert len(brokers) == 3
    voters = {s["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for s in brokers.values()}
    assert voters == {"1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}
    assert all("controller" in s["environment"]["KAFKA_PROCESS_ROLES"] for s in brokers.values())


def test_two_api_nodes_two_workers_and_a_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    roles: dict[str, tuple[bool, bool, bool]] = {}
    for name, service in _services().items():
        if service.get("image") != "jobledger:local":
            continue
        with monkeypatch.context() as env:
            args, config = _jobledger(name, service, env)
        assert config.kafka.bootstrap_servers == "kafka-1:19092,kafka-2:19092,kafka-3:19092"
        assert config.kafka.idempotent, f"{name}: the idempotent producer is on against Kafka"
        assert (config.kafka.replication_factor, config.kafka.min_insync_replicas) == (3, 2)
        if config.run_projections:
            assert str(config.views).startswith("/data/"), f"{name}: views on its volume"
            assert any(v.endswith(":/data") for v in service["volumes"]), name
        roles[name] = (config.run_projections, config.run_workers, config.run_scheduler)
    assert sorted(roles.values()) == sorted([
        (True, False, False), (True, False, False),  # api-1, api-2
        (False, True, False), (False, True, False),  # worker-1, worker-2
        (True, True, True),  # the scheduler: a worker with --schedules
    ])


def test_the_api_nodes_run_with_auth_on_and_share_one_admin_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """They listen on 0.0.0.0, so auth is on; each registers JOBLEDGER_ADMIN_KEY (the same
    key id on both), and only they are given it."""
    for name, service in _services().items():
        if service.get("image") != "jobledger:local":
            continue
        has_key = "JOBLEDGER_ADMIN_KEY" in service["environment"]
        assert has_key == name.startswith("api-"), name
        if has_key:
            with monkeypatch.context() as env:
                args, config = _jobledger(name, service, env)
                settings = security_settings(args, config.views.parent)
            assert settings.enabled and settings.admin_key, name
