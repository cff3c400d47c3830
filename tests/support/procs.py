"""Real server processes for recovery tests: start, wait until healthy, SIGKILL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

TESTS = Path(__file__).parent
TERMINAL = {"completed", "failed", "dead_letter", "cancelled"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`jobledger serve` in a subprocess on a free loopback port."""

    def __init__(self, db: Path, *args: str, env: dict[str, str] | None = None,
                 port: int | None = None):
        self.port = port or free_port()  # a restart on the port of the server it replaces
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(TESTS), **(env or {})}
        self.log = open(db.parent / f"serve-{self.port}.log", "wb")  # noqa: SIM115
        self.http = httpx.Client(base_url=self.url, timeout=5)  # one client: each costs ~40 ms
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobledger.services.cli.main", "serve", "--db", str(db),
             "--port", str(self.port), *args],
            stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )

    def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.output()}")
            try:
                if self.http.get("/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server not healthy after {timeout}s: {self.output()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.log.close()
        self.http.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        if not self.log.closed:
            self.log.close()
        self.http.close()

    def task(self, task_id: str) -> dict | None:
        response = self.http.get(f"/api/v1/tasks/{task_id}")
        return response.json() if response.status_code == 200 else None

    def finished(self, task_id: str) -> dict | None:
        """The task once it is in a terminal state, else None."""
        task = self.task(task_id)
        return task if task and task["status"] in TERMINAL else None

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-3000:]


def poll(predicate, timeout: float, interval: float = 0.1,  # type: ignore[no-untyped-def]
         what: str = "condition"):
    """Call predicate until it returns something truthy (across processes nothing can be
    awaited, so this is bounded polling); return that value or raise TimeoutError naming
    what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout:g} s")
        time.sleep(interval)
