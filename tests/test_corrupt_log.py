"""A damaged log file is one line naming the file, what is wrong and what to do, and exit
status 5 (Exit.DATA), from `jobledger serve` and `jobledger replay` alike; never a
traceback (issue 18, 7). The log is a real one written by a node, then damaged as a disk
would damage it: pages in the middle of the file overwritten."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from jobledger.services.cli.common import Exit
from jobledger.services.handlers.app import App
from jobledger.services.log.protocol import LogCorrupt
from jobledger.services.node.embedded import views_path
from jobledger.services.replay.rebuild import rebuild
from jobledger.services.write.producer import task_request
from tests.support.harness import NodeFactory
from tests.support.procs import free_port

JOBLEDGER = Path(sys.executable).with_name("jobledger")
PAGE = 4096  # SQLite's default page size, the log's


async def write_log(tmp_path: Path, jobs: int = 2_000) -> Path:
    """A log of `jobs` enqueued jobs (and their read models), its WAL folded into the file,
    so that the records fill the pages in the middle of it."""
    factory = NodeFactory(tmp_path)
    node = await factory(App(), allow_unknown_task_types=True)
    for start in range(0, jobs, 500):
        await node.commands.enqueue([task_request("t", {"n": n, "pad": "x" * 200})
                                     for n in range(start, start + 500)])
    await factory.close()
    conn = sqlite3.connect(factory.db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return factory.db


def damage(db: Path, pages: int = 4) -> None:
    """Overwrite `pages` pages in the middle of the file with noise, as a bad sector would."""
    size = db.stat().st_size
    assert size > 16 * PAGE, "too small a log to damage in the middle"
    noise = random.Random(18).randbytes(pages * PAGE)
    with db.open("r+b") as f:
        f.seek(size // PAGE // 2 * PAGE)
        f.write(noise)
    assert integrity(db) != "ok"


def integrity(db: Path) -> str:
    """What PRAGMA integrity_check says of the file (or the error it raises)."""
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    except sqlite3.DatabaseError as error:
        return str(error)
    finally:
        conn.close()


def jobledger(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(JOBLEDGER), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def assert_damaged_log_line(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == Exit.DATA == 5, result.stderr
    lines = [line for line in result.stderr.splitlines() if '"replay.started"' not in line]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: the log j.db is damaged (sqlite: database disk image "
                               "is malformed): restore it from a backup"), lines[0]
    assert "Traceback" not in result.stderr


@pytest.fixture
async def damaged_log(tmp_path: Path) -> Path:
    db = await write_log(tmp_path)
    damage(db)
    return db


@pytest.mark.slow
def test_serve_on_a_damaged_log_is_one_line_and_exit_5(damaged_log: Path) -> None:
    result = jobledger("serve", "--db", "j.db", "--port", str(free_port()), cwd=damaged_log.parent)
    assert_damaged_log_line(result)
    assert "jobledger: log" not in result.stdout + result.stderr  # no banner: it never served


@pytest.mark.slow
def test_serve_rebuilding_its_read_models_from_a_damaged_log_is_one_line_and_exit_5(
    damaged_log: Path,
) -> None:
    """Without read models every record is read at start (the dispatcher folds the whole
    jobs topic), and the damage is met there rather than when the log is opened."""
    views_path(damaged_log).unlink()
    result = jobledger("serve", "--db", "j.db", "--port", str(free_port()), cwd=damaged_log.parent)
    assert_damaged_log_line(result)


@pytest.mark.slow
def test_replay_of_a_damaged_log_is_one_line_and_exit_5(damaged_log: Path) -> None:
    result = jobledger("replay", "--db", "j.db", cwd=damaged_log.parent)
    assert_damaged_log_line(result)
    assert not (damaged_log.parent / "j.replay.db").exists()


async def test_a_replay_worker_process_meeting_the_damage_raises_it_as_one_error(
    damaged_log: Path,
) -> None:
    """A big log is folded by worker processes (two here, as from 200,000 records): the
    worker's LogCorrupt reaches the parent as itself, not as 'a replay worker failed'."""
    with pytest.raises(LogCorrupt, match="is damaged .*restore it from a backup"):
        await rebuild(damaged_log, damaged_log.with_name("out.db"), show_progress=False,
                      processes=2)


def test_a_file_that_is_not_a_database_is_exit_5_too(tmp_path: Path) -> None:
    """Its first page is no SQLite header: a log whose header was destroyed, or a path to
    some other file; the line says both."""
    (tmp_path / "j.db").write_bytes(b"not a log" * 1000)
    result = jobledger("serve", "--db", "j.db", "--port", str(free_port()), cwd=tmp_path)
    assert result.returncode == Exit.DATA, result.stderr
    assert result.stderr.splitlines() == [
        "error: cannot open the log j.db: file is not a database: give the path of a jobledger "
        "log; if it is one, it is damaged: restore it from a backup"]
