"""R20: the disk of the embedded server's log and read models fills up under enqueues, then
is freed, and the server is never restarted. False acks are acknowledged tasks (201) the
log does not hold or that never finish; recovery is the seconds from the space being
freed to /health 200 and a new task visible. The disk is a tmpfs (root only: without it
the row says so and does not run)."""

from __future__ import annotations

import os
import threading
import time
from contextlib import suppress
from pathlib import Path

import httpx

from tests.support.disk import fill, small_disk
from tests.support.procs import ServerProcess

from .common import Result, sleep_tasks, wait_for
from .embedded import ARGS, ENV, Sender, drained
from .history import embedded_history

DISK_SIZE = "64m"  # at 8 MB SQLite's two WAL files fill it by themselves


# Tasks with a 20 kB field: the log's WAL, reused after each checkpoint, must run out of
# room within seconds once the disk is full (its checkpoints cannot grow the file).
ROOM = 16 * 2**20  # of the 64 MB disk, left for the load to fill
BIG = {"task_type": "sleep", "payload": {"s": 0, "pad": "x" * 20_000}}


class Refusals(Sender):
    """A Sender that also counts the answers that were not 201."""

    def __init__(self, url: str):
        self.codes: dict[int, int] = {}
        self.lock = threading.Lock()
        super().__init__(url, threads=2)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as http:
            while not self._stop.is_set():
                try:
                    response = http.post("/api/v1/tasks/batch", json={"tasks": [BIG] * 10})
                except httpx.HTTPError:
                    continue
                with self.lock:
                    self.codes[response.status_code] = self.codes.get(response.status_code, 0) + 1
                if response.status_code == 201:  # a batch answers without waiting for
                    self.acked += response.json()["task_ids"]  # the read models


def r20_disk_full(workdir: Path, quick: bool) -> Result:
    """The disk is 64 MB: SQLite's WAL files alone take up to ~4 MB each between
    checkpoints, and on a disk they fill by themselves (8 MB) nothing can be freed."""
    full_s = 3.0 if quick else 15.0
    with small_disk(workdir / "disk", DISK_SIZE) as disk:
        db = workdir / "jl.db"  # the files on the small disk, the server's output not
        for name in ("jl.db", "jl.views.db"):  # SQLite puts a WAL beside its target
            (workdir / name).symlink_to(disk / name)
        server = ServerProcess(db, *ARGS, env=ENV)
        try:
            server.wait_healthy(90)
            # The filler takes all but ROOM of the disk first, and the load the rest: what
            # the load fills is the log's own (not freed), what the filler holds is.
            filler = fill(disk)
            os.truncate(filler, max(0, filler.stat().st_size - ROOM))
            sender = Refusals(server.url)
            filled = time.monotonic()
            wait_for(lambda: server.http.get("/health").status_code == 503, 30, "degraded")
            time.sleep(full_s)
            with suppress(TimeoutError):  # until the log refuses appends too
                wait_for(lambda: "log: disk full" in server.http.get("/health").text,
                         full_s * 10, "the log refusing appends")  # fmt: skip
            degraded = server.http.get("/health").json()
            sender.stop()  # else its batches would take the freed space at once
            filler.unlink()
            freed = time.monotonic()
            try:
                wait_for(lambda: server.http.get("/health").status_code == 200, 60,
                         "healthy again")
            except TimeoutError as error:
                raise TimeoutError(f"{error}: {server.http.get('/health').text[:300]}; "
                                   f"{server.output()[-600:]}") from None

            def visible() -> bool:
                answer = server.http.post("/api/v1/tasks", json=sleep_tasks(1)[0])
                return answer.status_code == 201 and bool(server.task(answer.json()["task_id"]))

            wait_for(visible, 60, "a new task visible")
            recovery = time.monotonic() - freed
            drained(server, 120)
            running = server.proc.poll() is None
            history = embedded_history(db)
        finally:
            server.stop()
    acked = sender.acked
    false_acks = history.lost(acked) + history.unfinished(acked)
    figures = {"acknowledged": len(acked), "false acks": len(false_acks),
               "answers": {str(k): v for k, v in sorted(sender.codes.items())},
               "full for s": round(freed - filled, 1), "recovery s without restart":
               round(recovery, 2), "reason while full": degraded.get("reason", "")[:160],
               "restarted": not running}
    return Result("R20", "disk full, then freed", figures,
                  ok=not false_acks and running and "503" in figures["answers"])
