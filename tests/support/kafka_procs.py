"""jobledger's Kafka-mode commands as subprocesses: `jobledger api` and `jobledger worker`,
started on the test broker, stopped by SIGTERM or killed by SIGKILL, by their own pid."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.kafka_broker import TansuBroker
from tests.support.kafka_harness import PARTITIONS, SESSION_TIMEOUT_MS
from tests.support.procs import TESTS, free_port

STOP_S = 30.0


def kafka_env(broker: TansuBroker, prefix: str, **extra: str) -> dict[str, str]:
    """The environment of every process of one test: the flags as JOBLEDGER_* variables."""
    return {
        **os.environ, "PYTHONPATH": str(TESTS),
        "JOBLEDGER_BROKER": f"kafka://{broker.bootstrap}", "JOBLEDGER_TOPIC_PREFIX": prefix,
        "JOBLEDGER_IDEMPOTENCE": "0",  # the test broker refuses InitProducerId
        "JOBLEDGER_PARTITIONS": str(PARTITIONS),
        "JOBLEDGER_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS), **extra,
    }


class JobledgerProcess:
    """`jobledger <command> <args>` with its output in <dir>/<name>.log."""

    def __init__(self, name: str, workdir: Path, env: dict[str, str], command: str, *args: str):
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobledger.services.cli.main", command, *args],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(STOP_S)
        self._close()

    def stop(self) -> None:
        """SIGTERM: a graceful stop (SIGKILL if it takes longer than STOP_S)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_S)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close()

    def check_running(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.output()}")

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    def _close(self) -> None:
        if not self._log.closed:
            self._log.close()


class ApiProcess(JobledgerProcess):
    """`jobledger api` on a free loopback port, with its read models in <dir>/<name>.db."""

    def __init__(self, name: str, workdir: Path, env: dict[str, str], *args: str):
        self.port = free_port()
        self.views = workdir / f"{name}.db"
        super().__init__(name, workdir, env, "api", "--views", str(self.views),
                         "--port", str(self.port), *args)  # fmt: skip
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_running()
            try:
                if self.http.get("/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)  # polling another process: nothing to await
        raise TimeoutError(f"{self.name} not healthy after {timeout}s: {self.output()}")

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def health(self) -> dict[str, Any]:
        return self.http.get("/health").json()  # type: ignore[no-any-return]

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows of this node's read models, read-only (it may be writing meanwhile)."""
        with sqlite3.connect(f"file:{self.views}?mode=ro", uri=True, timeout=10) as conn:
            return conn.execute(sql, params).fetchall()

    def _close(self) -> None:
        self.http.close()
        super()._close()


class WorkerProcess(JobledgerProcess):
    def __init__(self, name: str, workdir: Path, env: dict[str, str], *args: str):
        super().__init__(name, workdir, env, "worker", *args)
