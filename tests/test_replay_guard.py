"""services/replay/guard.py: `jobledger replay --out` never replaces a file a server works
on: the live read models, the log, or any file a process holds open."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from jobledger.services.node.embedded import views_path
from jobledger.services.replay.guard import (
    OutInUse,
    holders,
    refuse_a_protected_file,
    refuse_an_open_file,
)
from tests.support.procs import ServerProcess, poll


def test_holders_find_a_file_open_here_by_any_name(tmp_path: Path) -> None:
    held, idle = tmp_path / "held.db", tmp_path / "idle.db"
    held.write_bytes(b"x")
    idle.write_bytes(b"y")
    (tmp_path / "link.db").symlink_to(held)
    os.link(held, tmp_path / "hard.db")
    with held.open("rb"):
        for name in ("held.db", "link.db", "hard.db"):
            assert holders([idle, tmp_path / name]) == [(os.getpid(), tmp_path / name)]
        with pytest.raises(OutInUse, match=r"--out .*link.db is open in process \d+ \("):
            refuse_an_open_file(tmp_path / "link.db")
    assert holders([held, idle, tmp_path / "missing.db"]) == []
    refuse_an_open_file(held)  # closed: a replay may replace it


def test_a_wal_held_open_is_named(tmp_path: Path) -> None:
    out = tmp_path / "views.db"
    with Path(f"{out}-wal").open("wb"):
        with pytest.raises(OutInUse, match=r"views.db-wal is open in process"):
            refuse_an_open_file(out)


def test_a_protected_file_is_refused_by_path_or_by_link(tmp_path: Path) -> None:
    live = tmp_path / "j.views.db"
    protected = {"the live read-model file of j.db": live}
    with pytest.raises(OutInUse, match="is the live read-model file of j.db"):
        refuse_a_protected_file(tmp_path / "sub" / ".." / "j.views.db", protected)  # not there yet
    live.write_bytes(b"")
    (tmp_path / "link.db").symlink_to(live)
    os.link(live, tmp_path / "hard.db")
    for name in ("link.db", "hard.db"):
        with pytest.raises(OutInUse):
            refuse_a_protected_file(tmp_path / name, protected)
    refuse_a_protected_file(tmp_path / "j.replay.db", protected)


def _replay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jobledger.services.cli.main", "replay", *args],
                          capture_output=True, text=True, timeout=60)


def _inodes(views: Path) -> dict[str, int]:
    """The read models and their -wal and -shm: a replay over them would replace or remove
    them (new inodes, or none). Their sizes and times change as the server writes."""
    return {path.name: path.stat().st_ino
            for path in (views, Path(f"{views}-wal"), Path(f"{views}-shm"))}


@pytest.mark.slow
def test_replay_refuses_the_read_models_of_a_running_server(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    views = views_path(db)
    server = ServerProcess(db, "--demo")
    try:
        server.wait_healthy()
        first = server.http.post("/api/v1/tasks", json={"task_type": "echo"}).json()["task_id"]
        poll(lambda: server.finished(first), 10)
        other = tmp_path / "other.db"  # another log: only the open file gives views away
        with closing(sqlite3.connect(db)) as live, closing(sqlite3.connect(other)) as copy:
            live.backup(copy)
        (tmp_path / "link.db").symlink_to(views)
        before = _inodes(views)
        for args, says in [
            (["--db", str(db), "--out", str(views)], "is the live read-model file of"),
            (["--db", str(db), "--out", str(tmp_path / "link.db")], "is the live read-model"),
            (["--db", str(db), "--out", str(db)], "is the log file (--db)"),
            (["--db", str(other), "--out", str(views)], "is open in process"),
        ]:
            result = _replay(*args)
            assert result.returncode == 2, result.stderr
            assert result.stdout == "" and result.stderr.count("\n") == 1
            assert result.stderr.startswith("error: --out ") and says in result.stderr
        assert f"open in process {server.proc.pid} (" in result.stderr  # the last case's
        assert _inodes(views) == before
        second = server.http.post("/api/v1/tasks", json={"task_type": "echo"}).json()["task_id"]
        assert poll(lambda: server.finished(second), 10)["status"] == "completed"
    finally:
        server.stop()
