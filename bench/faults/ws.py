"""R25: a WebSocket subscriber dropped and resumed under load. `jobledger serve` runs a
steady stream of jobs; a client subscribed to every task drops its connection abruptly
(the TCP socket closed, no close frame) every 0.5-2 s and subscribes again with
`resume_from` its last cursor. Missed updates: acknowledged jobs whose last state the
client saw is not the one the log ends with (completed), after a last resume once
everything has finished."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from .common import Result, sleep_tasks
from .embedded import drained, server, submit
from .history import embedded_history


class Subscriber:
    def __init__(self, url: str):
        self.url = url
        self.cursor: str | None = None
        self.seen: dict[str, str] = {}
        self.resumes = self.resyncs = 0

    def session(self, seconds: float) -> None:
        """One connection: subscribe (resuming from the last cursor), read for `seconds`,
        then drop the connection without a close frame."""
        message: dict[str, Any] = {"type": "subscribe"}
        if self.cursor is not None:
            message["resume_from"] = self.cursor
            self.resumes += 1
        with connect(self.url, open_timeout=10, max_size=None) as ws:
            try:
                ws.send(json.dumps(message))
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    self._read(ws, deadline)
            finally:
                ws.socket.shutdown(socket.SHUT_RDWR)  # dropped: no close handshake
                ws.socket.close()

    def _read(self, ws: ClientConnection, deadline: float) -> None:
        try:
            raw = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            return
        except ConnectionClosed:
            time.sleep(max(0.0, deadline - time.monotonic()))
            return
        update = json.loads(raw)
        if update.get("type") == "task_update":
            self.seen[update["task"]["task_id"]] = update["task"]["status"]
            self.cursor = update["cursor"]
        elif update.get("type") == "subscribed" and self.cursor is None:
            self.cursor = update.get("cursor")
        elif update.get("type") == "resync_required":
            self.resyncs += 1


def _final_status(history: Any, job_id: str) -> str | None:
    state = history.state(job_id)
    return None if state is None else str(state.status)


def r25_ws_resume(workdir: Path, quick: bool) -> Result:
    seconds = 10.0 if quick else 60.0
    rng = random.Random(25)
    db = workdir / "jl.db"
    with server(db) as proc:
        client = Subscriber(f"ws://127.0.0.1:{proc.port}/ws")
        acked: list[str] = []
        stop = threading.Event()

        def load() -> None:
            try:
                while not stop.is_set():
                    acked.extend(submit(proc, sleep_tasks(50, 0.01)))
                    time.sleep(0.05)
            finally:
                stop.set()  # the row ends (an error of the server's, or of the row's)

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        started = time.monotonic()
        try:
            while time.monotonic() - started < seconds and not stop.is_set():
                client.session(rng.uniform(0.5, 2.0))
        finally:
            stop.set()
            loader.join(30)
        drained(proc, 120)
        client.session(2.0)  # a last resume: what changed since the last drop
    history = embedded_history(db)
    missed = [j for j in acked if client.seen.get(j) != _final_status(history, j)]
    figures = {"seconds": seconds, "jobs": len(acked), "drops": client.resumes,
               "missed updates": len(missed), "resync_required": client.resyncs}
    return Result("R25", "WebSocket dropped and resumed under load", figures,
                  ok=not missed and not client.resyncs)
