"""The Kafka-mode commands refuse bad flags and bad JOBLEDGER_* variables with one line
naming the flag, before they connect to anything."""

from __future__ import annotations

import pytest

from jobledger.services.cli.kafka import node_config_for
from jobledger.services.cli.main import build_parser, main

BROKER = "kafka://127.0.0.1:1"  # never reached: every case fails before connecting


@pytest.mark.parametrize(("argv", "message"), [
    (["worker", "--broker", "127.0.0.1:9092", "--demo"], "--broker: give kafka://"),
    (["worker", "--broker", BROKER], "--app: give your handlers"),
    (["worker", "--broker", BROKER, "--demo", "--partitions", "0"], "partitions: must be"),
    (["api", "--broker", BROKER, "--replication-factor", "0"], "replication_factor: must be"),
    (["api", "--broker", BROKER, "--min-insync-replicas", "2"], "min_insync_replicas"),
    (["worker", "--broker", BROKER, "--demo", "--session-timeout-ms", "10"], "session_timeout_ms"),
])  # fmt: skip
def test_bad_flags_are_named(argv: list[str], message: str,
                             capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_a_bad_variable_is_reported_by_its_name_and_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("JOBLEDGER_SESSION_TIMEOUT_MS", "soon")
    with pytest.raises(SystemExit) as exit_:
        main(["worker", "--broker", BROKER, "--demo"])
    assert exit_.value.code == 2
    assert ("JOBLEDGER_SESSION_TIMEOUT_MS (the variable of --session-timeout-ms): invalid int "
            "value: 'soon'") in capsys.readouterr().err
    monkeypatch.setenv("JOBLEDGER_SESSION_TIMEOUT_MS", "2000")
    monkeypatch.setenv("JOBLEDGER_PROJECTION_HOST", "kafka-streams")
    with pytest.raises(SystemExit):
        main(["api", "--broker", BROKER])
    assert ("JOBLEDGER_PROJECTION_HOST (the variable of --projection-host): one of aiokafka, "
            "faust, got 'kafka-streams'") in capsys.readouterr().err
    assert main(["schema"]) == 0  # commands without the flag do not care


def test_variables_configure_the_node(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"BROKER": "kafka://k1:9092, k2:9092", "TOPIC_PREFIX": "prod.",
                        "PARTITIONS": "24", "IDEMPOTENCE": "0", "SCHEDULES": "1",
                        "CONCURRENCY": "3", "VIEWS": "/data/w.db",
                        "PROJECTION_HOST": "faust"}.items():  # fmt: skip
        monkeypatch.setenv(f"JOBLEDGER_{name}", value)
    config = node_config_for(build_parser().parse_args(["worker", "--demo"]))
    assert config.kafka.bootstrap_servers == "k1:9092,k2:9092"
    assert (config.kafka.topic_prefix, config.kafka.partitions) == ("prod.", 24)
    assert config.kafka.idempotent is False
    assert (config.run_workers, config.run_scheduler, config.run_projections) == (True, True, True)
    assert config.dispatcher.concurrency == 3 and str(config.views) == "/data/w.db"
    assert config.group_id("dispatchers") == "prod.dispatchers"
    assert config.projection_host == "faust"
    assert node_config_for(build_parser().parse_args(["api"])).projection_host == "faust"
