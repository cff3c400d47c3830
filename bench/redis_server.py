"""Debian's redis-server, started by the suite on a free loopback port with no persistence,
shared by the Redis-backed peers (emptied between runs) and stopped by PID at the end."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path

from .procs import Service, free_port


class RedisServer:
    def __init__(self, tmp: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tmp / "redis"
        self.dir.mkdir()
        self.service = Service(
            "redis-server",
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), "--daemonize", "no",
             "--loglevel", "warning"],
            tmp, os.environ,
        )

    @staticmethod
    def missing() -> str | None:
        if shutil.which("redis-server") is None:
            return "redis-server not found (apt-get install -y redis-server)"
        return None

    def _cli(self, *args: str) -> str:
        return subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True,
            timeout=10, check=False,
        ).stdout.strip()

    async def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self._cli("PING") != "PONG":
            self.service.check_running()
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server on port {self.port} did not answer PING")
            await asyncio.sleep(0.05)

    def flush(self) -> None:
        """Empty it between runs, so no run sees another's queue."""
        self._cli("FLUSHALL")

    def stop(self) -> None:
        self.service.stop()
