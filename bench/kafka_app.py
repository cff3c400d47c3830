"""The handlers of Kafka mode's worker processes: `jobledger worker --app bench.kafka_app:app`.

`noop` is the same no-op job body as everyone's (bench/recorder.py's payload: a file and
how many jobs to expect), but its jobs are spread over several worker processes, and no
single process sees all of them start. So each process writes the starts it has seen to
a part file of its own beside the expected file (`<out>.<pid>.part`, appended every
FLUSH_S), and renames a marker naming how many it has written (`<out>.<pid>.<count>.count`);
whoever finds the markers adding up to the expected number merges the parts into `<out>`,
atomically, in the format `bench.recorder.read_recorded` reads.

`hold` is the failover workload's job (bench/workloads/failover.py): its first attempt
never ends (until the worker stops), every later attempt records its start at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from jobledger.services.handlers.app import App
from jobledger.services.handlers.context import JobContext

FLUSH_S = 0.05

app = App()
_lock = threading.Lock()
_runs: dict[str, tuple[list[float | None], list[float], int]] = {}  # out -> sent, started, n
_written: dict[str, int] = {}  # out -> starts already appended to this process's part
_flusher: threading.Thread | None = None
_dirty = threading.Event()


@app.job("noop")
async def noop(ctx: JobContext, payload: Any) -> None:
    job_started(payload)


def job_started(payload: Any) -> None:
    now = time.monotonic()
    if not isinstance(payload, dict) or "out" not in payload:
        return
    with _lock:
        sent, started, _ = _runs.setdefault(payload["out"], ([], [], payload["n"]))
        sent.append(payload.get("t"))
        started.append(now)
        _ensure_flusher()
    _dirty.set()


def _ensure_flusher() -> None:
    global _flusher
    if _flusher is None:
        _flusher = threading.Thread(target=_flush_forever, name="bench-recorder", daemon=True)
        _flusher.start()


def _flush_forever() -> None:
    while True:
        _dirty.wait()
        time.sleep(FLUSH_S)  # gather the starts of a while into one write
        _dirty.clear()
        with _lock:
            new = {out: (s[_written.get(out, 0):], t[_written.get(out, 0):], n)
                   for out, (s, t, n) in _runs.items()}
        for out, (sent, started, expected) in new.items():
            if started:
                _append_part(Path(out), sent, started, expected)


def _append_part(out: Path, sent: list[float | None], started: list[float], expected: int) -> None:
    """Append the new starts to this process's part (one `sent started` line each), then
    rename its count marker: a marker never counts lines not yet written."""
    pid = os.getpid()
    before = _written.get(str(out), 0)
    with open(out.parent / f"{out.name}.{pid}.part", "a") as part:
        part.writelines(f"{'-' if s is None else repr(s)} {t!r}\n"
                        for s, t in zip(sent, started, strict=True))
    count = before + len(started)
    marker = out.parent / f"{out.name}.{pid}.{count}.count"
    if before:
        os.replace(out.parent / f"{out.name}.{pid}.{before}.count", marker)
    else:
        marker.touch()
    _written[str(out)] = count
    counts = {int(m.name.rsplit(".", 3)[-3]): int(m.name.rsplit(".", 2)[-2])
              for m in out.parent.glob(f"{out.name}.*.*.count")}
    if sum(counts.values()) < expected:
        return
    merged: dict[str, list[Any]] = {"sent": [], "started": [], "pids": sorted(counts)}
    for other, lines in counts.items():
        with open(out.parent / f"{out.name}.{other}.part") as part:
            for line in part.readlines()[:lines]:
                s, t = line.split()
                merged["sent"].append(None if s == "-" else float(s))
                merged["started"].append(float(t))
    tmp = out.parent / f"{out.name}.{pid}.tmp"
    tmp.write_text(json.dumps(merged))
    os.replace(tmp, out)


@app.job("hold")
async def hold(ctx: JobContext, payload: Any) -> None:
    """Failover: attempt 1 holds its slot until the worker stops; a later attempt records
    (pid, attempt, start) in <dir>/<job id>.<attempt> and ends."""
    attempt = ctx.attempt
    where = Path(payload["dir"])
    (where / f"{ctx.job_id}.{attempt}").write_text(
        json.dumps({"pid": os.getpid(), "attempt": attempt, "started": time.monotonic()}))
    if attempt == 1:
        await asyncio.sleep(3600)
