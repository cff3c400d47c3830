"""What every row uses: the processes (a test broker with `jobledger api` and `worker`
processes, or `jobledger serve`), signals sent to them by their own pid, bounded waits,
and the row's result.

Processes are the ones users start, from tests/support (kafka_procs.py, procs.py), with
the handlers of bench/faults/app.py. Every process is stopped by its pid when the row ends.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bench.env import ROOT

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.kafka_broker import TansuBroker, start_broker, unique_prefix  # noqa: E402
from tests.support.kafka_procs import (  # noqa: E402
    ApiProcess,
    JobledgerProcess,
    WorkerProcess,
    kafka_env,
)
from tests.support.procs import TESTS, ServerProcess, poll  # noqa: E402

from .history import History, kafka_history  # noqa: E402

T = TypeVar("T")
APP = "bench.faults.app:app"
PARTITIONS = 4
UNFINISHED = "SELECT count(*) FROM jobs WHERE status IN ('scheduled', 'pending', 'in_progress')"


@dataclass
class Result:
    """One row's outcome: its figures (named as in issue 18's table), whether it passed
    (the figures the issue wants at 0 are 0), and notes on how it ran."""

    row: str
    fault: str
    figures: dict[str, Any]
    ok: bool
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def wait_for(predicate: Callable[[], T], timeout: float, what: str,
             interval: float = 0.1) -> T:  # fmt: skip
    """Poll another process's state until predicate gives something truthy (tests' poll);
    TimeoutError naming what was awaited."""
    return poll(predicate, timeout, interval, what)  # type: ignore[no-any-return]


def send(proc: JobledgerProcess | ServerProcess, sig: signal.Signals) -> None:
    """Send sig to a process we started, by its pid."""
    if proc.proc.poll() is None:
        os.kill(proc.proc.pid, sig)


class Cluster:
    """A fresh test broker, `jobledger api` and worker processes on one topic prefix."""

    def __init__(self, workdir: Path, worker_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None):  # fmt: skip
        self.workdir = workdir
        self.broker: TansuBroker = start_broker(workdir)
        self.prefix = unique_prefix("faults")
        self.env = {**kafka_env(self.broker, self.prefix, **(env or {})),
                    "PYTHONPATH": f"{ROOT}{os.pathsep}{TESTS}"}
        self.worker_args = ("--app", APP, *worker_args)
        self.procs: list[JobledgerProcess] = []
        self.workers: list[WorkerProcess] = []
        self.api: ApiProcess | None = None
        self._n = 0

    def start_api(self, name: str = "api") -> ApiProcess:
        api = ApiProcess(name, self.workdir, self.env)
        self.procs.append(api)
        api.wait_healthy(60)
        self.api = self.api or api
        return api

    def start_worker(self, env: dict[str, str] | None = None) -> WorkerProcess:
        self._n += 1
        worker = WorkerProcess(f"worker{self._n}", self.workdir, {**self.env, **(env or {})},
                               *self.worker_args)  # fmt: skip
        self.procs.append(worker)
        self.workers.append(worker)
        return worker

    def live_workers(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.proc.poll() is None]

    def took_over(self, worker: WorkerProcess, timeout: float = 60) -> None:
        wait_for(lambda: worker.check_running() or "took over jobs" in worker.output(),
                 timeout, f"{worker.name} owning jobs partitions")

    def submit(self, tasks: list[dict[str, Any]]) -> list[str]:
        """Enqueue through the API in one batch; the ids it acknowledged."""
        assert self.api is not None
        response = self.api.http.post("/api/v1/tasks/batch", json={"tasks": tasks})
        if response.status_code != 201:
            raise RuntimeError(f"batch answered {response.status_code}: {response.text[:300]}")
        return list(response.json()["task_ids"])

    def unfinished(self) -> int:
        assert self.api is not None
        return int(self.api.rows(UNFINISHED)[0][0])

    def history(self) -> History:
        return kafka_history(self.broker.bootstrap, self.prefix, PARTITIONS)

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.proc.poll() is None:
                send(proc, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            proc.stop()
        self.broker.stop()


@contextmanager
def cluster(workdir: Path, worker_args: tuple[str, ...] = (),
            env: dict[str, str] | None = None) -> Iterator[Cluster]:  # fmt: skip
    c = Cluster(workdir, worker_args, env)
    try:
        yield c
    finally:
        c.close()


def worker_args(concurrency: int = 8, lease: float = 3.0, grace: float = 1.0) -> tuple[str, ...]:
    return ("--concurrency", str(concurrency), "--lease-seconds", f"{lease:g}",
            "--shutdown-grace-seconds", f"{grace:g}", "--log-level", "info")


def sleep_tasks(n: int, seconds: float = 0.0, **extra: Any) -> list[dict[str, Any]]:
    return [{"task_type": "sleep", "payload": {"s": seconds}, **extra} for _ in range(n)]
