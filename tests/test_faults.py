"""Passing faults (services/runtime/faults.py): which errors are worth retrying, the backoff
by the clock, and what /health is told."""

from __future__ import annotations

import errno
import logging
import sqlite3
from pathlib import Path

import pytest

from jobledger.services.log.protocol import LogError
from jobledger.services.runtime.clock import ManualClock
from jobledger.services.runtime.faults import MAX_RETRY_S, Faults, passing_fault


def sqlite_error(tmp_path: Path, sql: str) -> sqlite3.Error:
    conn = sqlite3.connect(tmp_path / "f.db")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS t (x BLOB)")
        conn.execute(sql)
    except sqlite3.Error as error:
        return error
    finally:
        conn.close()
    raise AssertionError(f"{sql} did not fail")


def test_a_full_disk_is_a_passing_fault_and_a_bug_is_not(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "full.db", isolation_level=None)
    conn.execute("CREATE TABLE t (x BLOB)")
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(sqlite3.OperationalError) as full:
        conn.execute("INSERT INTO t VALUES (?)", (b"x" * 100_000,))
    conn.close()
    assert passing_fault(full.value) == "disk full (SQLITE_FULL)"
    wrapped = LogError("append to j.db failed: database or disk is full")
    wrapped.__cause__ = full.value  # as the SQLite log raises it
    assert passing_fault(wrapped) == "disk full (SQLITE_FULL)"
    assert passing_fault(OSError(errno.ENOSPC, "x")) == "No space left on device (ENOSPC)"
    assert passing_fault(sqlite_error(tmp_path, "SELECT nope FROM t")) is None  # a bug
    assert passing_fault(ValueError("x")) is None
    assert passing_fault(LogError("topic 'x' does not exist")) is None


def test_the_backoff_is_half_the_time_failing_from_half_a_second_up_to_ten(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    faults = Faults(clock)
    delays = []
    with caplog.at_level(logging.INFO, "jobledger.node"):
        for _ in range(14):
            delays.append(faults.failing("projection jobs", "disk full (SQLITE_FULL)"))
            clock.advance(delays[-1])
        assert faults.reasons() == [
            "projection jobs: disk full (SQLITE_FULL) since 2026-01-01T00:00:00Z, retrying"]
        faults.resumed("projection jobs")
    assert delays[:5] == [0.5, 0.5, 0.5, 0.75, 1.125]
    assert delays == sorted(delays) and delays[-1] == MAX_RETRY_S
    assert faults.reasons() == []
    assert [r.getMessage() for r in caplog.records] == [  # once as it starts, once as it ends
        "projection jobs: disk full (SQLITE_FULL); retrying until it passes",
        f"projection jobs: resumed after {sum(delays):.1f} s (disk full (SQLITE_FULL))"]


def test_a_fault_keeps_its_first_error() -> None:
    faults = Faults(ManualClock())
    faults.failing("dispatcher appends", "disk full (SQLITE_FULL)")
    faults.failing("dispatcher appends", "database busy (SQLITE_BUSY)")
    assert faults.reasons() == ["dispatcher appends: disk full (SQLITE_FULL) since "
                                "2026-01-01T00:00:00Z, retrying"]
