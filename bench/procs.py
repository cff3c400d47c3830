"""Processes the benchmark starts: on a free loopback port, stopped by their PID, their
memory read from /proc (VmHWM is the peak resident set of a process's whole life)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss_mb(pid: int) -> float:
    """The peak RSS of a live process in MB (VmHWM; the current RSS where /proc lacks it)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return psutil.Process(pid).memory_info().rss / 2**20


class Service:
    """A subprocess started by the benchmark; output goes to a log file in `logs`."""

    def __init__(self, name: str, argv: Sequence[str], logs: Path, env: Mapping[str, str],
                 cwd: Path | None = None):
        self.name = name
        self.log_path = logs / f"{name}.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT,
                                         env=dict(env), cwd=cwd)
        self.ps = psutil.Process(self.proc.pid)
        self._children: dict[int, psutil.Process] = {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_running(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.output()}")

    def processes(self) -> list[psutil.Process]:
        """This process and every process it started (remembered, so stop() ends them)."""
        try:
            for child in self.ps.children(recursive=True):
                self._children.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            pass
        return [self.ps, *self._children.values()]

    def peak_rss_mb(self) -> dict[str, float]:
        """Peak RSS of each live process of this service, by `name[pid]`."""
        out = {}
        for p in self.processes():
            try:
                out[f"{p.name()}[{p.pid}]"] = round(peak_rss_mb(p.pid), 1)
            except (psutil.NoSuchProcess, OSError):
                pass
        return out

    def rss_mb(self) -> float:
        return float(self.ps.memory_info().rss / 2**20)

    def cpu_seconds(self) -> float:
        """User + system CPU time of this process so far."""
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM by PID, SIGKILL after `timeout`; then any child it left behind, by PID."""
        children = self.processes()[1:]
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        for child in children:
            try:
                if child.is_running() and child.ppid() in (self.pid, 1):
                    os.kill(child.pid, signal.SIGKILL)
            except (psutil.NoSuchProcess, ProcessLookupError):
                pass

    def output(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""
