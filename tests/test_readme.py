"""Every fenced block of README.md runs as written, in order, the way a newcomer runs them.

- A Python block whose first line is `# name.py` is saved as that file (`myjobs.py`);
  any other Python block runs as a script and must exit 0.
- A shell block runs line by line (a trailing backslash continues a line) with bash, each
  `&&` step on its own, and every step must exit 0. `jobledger serve`, `api` and `worker`
  start in the background and are waited for; the first one a block starts stops the
  servers of the blocks before (as a user stops one server before starting the next).
- Steps that install (`pip install`, `apt-get`) and the test command itself (the lint,
  the type check and the tests) are the README's two set-up commands: CI has just run
  them to get here. Those, and only those, are not run; the test checks that nothing
  else is passed over.

What the test changes, so that it can run beside other tests: the port 8080 (and the
Kafka address localhost:9092) becomes a free port (the test broker's address), through
`JOBLEDGER_*` variables and by rewriting the addresses in the blocks' text; Kafka topics
get a prefix of their own, and the test broker is told not to expect idempotence, which
it cannot do (docs/kafka.md). `<task_id>` stands for the last task id a step printed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.kafka_broker import TansuBroker, unique_prefix
from tests.support.procs import free_port

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
TASK_ID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
SET_UP = ("pip install", "apt-get", "ruff check", "bash tools/typecheck.sh", "python -m pytest")
BACKGROUND = re.compile(r"^jobledger (serve|api|worker)\b")
STEP_SECONDS = 90  # a step that runs longer is stuck: the test fails rather than hangs
pytestmark = pytest.mark.slow


@dataclass
class Readme:
    """Runs the README's blocks in a work folder, against servers it starts."""

    work: Path
    port: int
    broker: str
    env: dict[str, str]
    servers: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    last_task_id: str = ""

    def run_block(self, lang: str, text: str, number: int) -> None:
        if lang == "python":
            self.python(text, number)
        else:
            self.shell(text)

    def python(self, text: str, number: int) -> None:
        first = text.splitlines()[0]
        if re.fullmatch(r"# \w+\.py", first):
            (self.work / first[2:]).write_text(text)
            return
        script = self.work / f"readme_block_{number}.py"
        script.write_text(self.addressed(text))
        self.step([sys.executable, str(script)], text)

    def shell(self, text: str) -> None:
        started = False
        for line in text.replace("\\\n", " ").splitlines():
            for step in filter(None, (s.strip() for s in line.split(" && "))):
                if step.startswith(SET_UP):
                    self.skipped.append(step)
                elif BACKGROUND.match(step):
                    if not started:
                        self.stop_servers()
                        started = True
                    self.start_server(self.addressed(step))
                else:
                    command = self.addressed(step).replace("<task_id>", self.last_task_id)
                    self.step(["bash", "-c", command], step)

    def addressed(self, text: str) -> str:
        text = text.replace("localhost:9092", self.broker).replace("--port 8080",
                                                                     f"--port {self.port}")
        return re.sub(r"(localhost|127\.0\.0\.1):8080", f"127.0.0.1:{self.port}", text)

    def step(self, argv: list[str], shown: str) -> None:
        done = subprocess.run(argv, cwd=self.work, env=self.env, capture_output=True,
                              timeout=STEP_SECONDS, text=True)  # fmt: skip
        assert done.returncode == 0, f"{shown!r} exited {done.returncode}:\n{done.stderr}"
        ids = TASK_ID.findall(done.stdout)
        self.last_task_id = ids[-1] if ids else self.last_task_id

    def start_server(self, command: str) -> None:
        log = self.work / f"server{len(self.servers)}.log"
        with log.open("wb") as out:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=self.work,
                                    env=self.env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        self.servers.append((command, proc))
        self.wait_started(command, proc, log)

    def wait_started(self, command: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        """serve and api: /health answers 200; worker: its banner (printed once started)."""
        deadline = time.monotonic() + STEP_SECONDS
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"{command!r} exited:\n{log.read_text()}"
            if command.startswith("jobledger worker"):
                if "jobledger worker:" in log.read_text():
                    return
            elif self.healthy():
                return
            time.sleep(0.1)
        raise AssertionError(f"{command!r} did not start:\n{log.read_text()}")

    def healthy(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).is_success
        except httpx.HTTPError:
            return False

    def stop_servers(self) -> None:
        for _, proc in reversed(self.servers):
            proc.terminate()
        for command, proc in self.servers:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise AssertionError(f"{command!r} did not stop on SIGTERM") from None
        self.servers.clear()


def readme_blocks() -> list[tuple[str, str]]:
    return [(m[1], m[2]) for m in FENCE.finditer(README.read_text())]


def test_the_readme_holds_python_and_shell_blocks() -> None:
    langs = [lang for lang, _ in readme_blocks()]
    assert "python" in langs and "" in langs


def test_every_readme_block_runs_as_written(tmp_path: Path, kafka_broker: TansuBroker) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBLEDGER_")}
    env.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "JOBLEDGER_PORT": str(port),
        "JOBLEDGER_SERVER": f"http://127.0.0.1:{port}",
        "JOBLEDGER_TOPIC_PREFIX": unique_prefix("readme"),
        "JOBLEDGER_IDEMPOTENCE": "0",  # the test broker cannot do it (docs/kafka.md)
    })  # fmt: skip
    readme = Readme(tmp_path, port, f"127.0.0.1:{kafka_broker.advertised_port}", env)
    try:
        for number, (lang, text) in enumerate(readme_blocks()):
            readme.run_block(lang, text, number)
    finally:
        readme.stop_servers()
    assert sorted(readme.skipped) == sorted([
        "apt-get update", "apt-get install -y kcat chromium zsh fish", "pip install -e .",
        "pip install -r requirements/test.lock -e .", "ruff check .", "bash tools/typecheck.sh",
        "python -m pytest -q",
    ])  # fmt: skip
