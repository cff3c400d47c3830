"""The rows, by their number in issue 18's table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from . import disk, embedded, garbage, poison, soak, workers, ws
from .common import Result

Row = Callable[[Path, bool], Result]

ROWS: dict[str, Row] = {
    "R1": workers.r1_kill_workers,
    "R3": workers.r3_stop_past_lease,
    "R5": workers.r5_sigterm_long_jobs,
    "R9": workers.r9_churn,
    "R13": poison.r13_poison,
    "R14": garbage.r14_garbage,
    "R17": embedded.r17_cancel_races_completion,
    "R19": embedded.r19_kill_server,
    "R20": disk.r20_disk_full,
    "R23": embedded.r23_rebuild_killed,
    "R25": ws.r25_ws_resume,
    "R26": soak.r26_soak,
}
