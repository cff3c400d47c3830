"""A command that cannot start says why in one line, names the fix and exits non-zero, with
no traceback unless --debug (issue 15): real `jobledger` processes, started by the console
script as a user starts them (its sys.path begins with the script's folder, not the current
directory), against a real second server, a port a socket holds, a folder that is a file,
and a test broker that refuses the idempotent producer. The banner is printed only once
the server listens."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka.errors import KafkaConnectionError, UnknownError

from jobledger.services.log.kafka import KafkaConfig, producer_start_error
from tests.support.kafka_broker import TansuBroker, unique_prefix
from tests.support.procs import ServerProcess, free_port, poll

pytestmark = pytest.mark.slow

JOBLEDGER = Path(sys.executable).with_name("jobledger")  # installed by `pip install -e .`
MYJOBS = """\
from jobledger import App

app = App()

@app.job("greet")
async def greet(ctx, payload):
    return f"hello {payload}"
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("JOBLEDGER_")}


def jobledger(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(JOBLEDGER), *args], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def assert_one_line(result: subprocess.CompletedProcess[str], status: int, *parts: str) -> str:
    """stderr is one line, `error: ...` holding every part; no banner, no traceback."""
    assert result.returncode == status, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert all(part in lines[0] for part in parts), lines[0]
    return lines[0]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "myjobs.py").write_text(MYJOBS)
    return tmp_path


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port another process (this test) listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_serve_finds_the_app_in_the_current_directory_and_listens_before_its_banner(
    project: Path,
) -> None:
    port = free_port()
    log = project / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(JOBLEDGER), "serve", "--app", "myjobs:app", "--port",
                                 str(port)], cwd=project, env=_env(), stderr=out)  # fmt: skip
    try:
        banner = poll(lambda: proc.poll() is None and "http://" in log.read_text() and
                      log.read_text(), timeout=30)  # fmt: skip
        # Beside the banner, only the server's own log lines (JSON: stderr is not a TTY).
        lines = [line for line in banner.splitlines() if not line.startswith('{"time"')]
        assert lines == [f"jobledger: log jobledger.db, 1 task types, http://127.0.0.1:{port}, "
                         "auth off"]
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200  # no retry
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert "Traceback" not in log.read_text(), log.read_text()


@pytest.mark.parametrize(("spec", "message"), [
    ("myjobs", "--app must look like module:attribute (e.g. myjobs:app), got 'myjobs'"),
    ("myjobs:nope", "--app myjobs:nope: module myjobs has no attribute 'nope'"),
    ("theirjobs:app", "--app theirjobs:app: no module named 'theirjobs' in "),
])  # fmt: skip
def test_a_bad_app_is_one_line_and_status_2(spec: str, message: str, project: Path) -> None:
    assert_one_line(jobledger("serve", "--app", spec, cwd=project), 2, message)


def test_a_second_serve_on_the_same_log_names_the_first_and_prints_no_banner(
    tmp_path: Path,
) -> None:
    first = ServerProcess(tmp_path / "j.db", "--demo")
    try:
        first.wait_healthy()
        second = jobledger("serve", "--db", "j.db", "--port", str(free_port()), cwd=tmp_path)
        assert_one_line(second, 1, f"j.db is already open for writing by process "
                        f"{first.proc.pid}", "stop that process")  # fmt: skip
    finally:
        first.stop()


def test_a_port_in_use_is_one_line_naming_port_before_the_log_is_opened(
    tmp_path: Path, held_port: int,
) -> None:
    result = jobledger("serve", "--port", str(held_port), cwd=tmp_path)
    assert_one_line(result, 1, f"127.0.0.1:{held_port} is already in use", "another --port")
    assert not (tmp_path / "jobledger.db").exists()  # the port is bound first
    debug = jobledger("serve", "--port", str(held_port), "--debug", cwd=tmp_path)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "StartupError" in debug.stderr


def test_a_log_in_a_folder_that_cannot_hold_it_is_one_line_naming_db(tmp_path: Path) -> None:
    # Tests run as root, whom chmod 000 does not stop; a path under a file stops everyone.
    (tmp_path / "notes").write_text("a file, not a folder")
    result = jobledger("serve", "--db", "notes/j.db", cwd=tmp_path)
    assert_one_line(result, 1, "--db notes/j.db: notes is not a folder that exists")
    (tmp_path / "j.db").write_text("not a log")
    result = jobledger("serve", "--db", "j.db", "--port", str(free_port()), cwd=tmp_path)
    assert_one_line(result, 5, "cannot open the log j.db: file is not a database")


def test_a_broker_refusing_the_idempotent_producer_is_one_line_naming_the_switch(
    kafka_broker: TansuBroker, tmp_path: Path,
) -> None:
    # The test broker refuses InitProducerId (docs/kafka.md); idempotence is on by default.
    # One line: no worker banner (it waits for the start) and no aiokafka log of the refusal.
    result = jobledger("worker", "--broker", f"kafka://{kafka_broker.bootstrap}", "--demo",
                       "--topic-prefix", unique_prefix(), cwd=tmp_path)  # fmt: skip
    assert_one_line(result, 1, f"the Kafka broker at {kafka_broker.bootstrap} refused the "
                    "idempotent producer", "--no-idempotence")  # fmt: skip


def test_producer_start_errors_are_told_apart() -> None:
    """KafkaError is a RuntimeError: the codec branch caught the refusal first."""
    config = KafkaConfig("k1:9092")
    refused = str(producer_start_error(UnknownError(), config))
    assert "refused the idempotent producer" in refused and "compression" not in refused
    unreachable = str(producer_start_error(KafkaConnectionError("no route"), config))
    assert unreachable.startswith("cannot reach Kafka at k1:9092")
    codec = str(producer_start_error(RuntimeError("Compression library for lz4 not found"),
                                     KafkaConfig("k1:9092", compression="lz4")))  # fmt: skip
    assert codec.startswith("compression 'lz4': Compression library for lz4 not found")
    plain = KafkaConfig("k1:9092", idempotent=False)
    assert "cannot start the producer" in str(producer_start_error(UnknownError(), plain))

