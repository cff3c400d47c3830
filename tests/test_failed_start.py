"""A start that fails half-way closes what it opened and the process exits non-zero within
seconds (issue 18, item 3: after an OS crash, a start-up that failed in the dispatcher's
catch-up left an aiosqlite thread running, and the process hung instead of exiting)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import ItemsView
from pathlib import Path

import pytest

from jobledger.schemas.schedules import ScheduleDefinition
from jobledger.services.handlers.app import App
from jobledger.services.node.embedded import EmbeddedNode, NodeConfig
from tests.support.procs import TESTS, free_port

EXIT_SECONDS = 15.0  # a failed start exits in about one; a hang never does


def _connection_threads() -> set[threading.Thread]:
    """aiosqlite's: one per open connection, and not a daemon."""
    return {t for t in threading.enumerate() if "_connection_worker_thread" in t.name}


class Unreadable(dict[str, ScheduleDefinition]):
    """Code-declared schedules that cannot be read: the last step of a start fails."""

    def items(self) -> ItemsView[str, ScheduleDefinition]:
        raise RuntimeError("the declared schedules cannot be read")


async def test_a_failed_start_closes_every_connection_it_opened(tmp_path: Path) -> None:
    before = _connection_threads()
    app = App()
    app.schedules = Unreadable()
    node = EmbeddedNode(NodeConfig(db=tmp_path / "j.db"), app)
    with pytest.raises(RuntimeError, match="declared schedules cannot be read"):
        await node.start()
    assert _connection_threads() - before == set()


@pytest.mark.slow
def test_a_server_whose_start_fails_exits_non_zero_within_seconds(tmp_path: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "jobledger.services.cli.main", "serve", "--db",
         str(tmp_path / "j.db"), "--port", str(free_port()), "--app", "failing_start_app:app"],
        cwd=TESTS, capture_output=True, text=True, timeout=EXIT_SECONDS,
    )
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == "RuntimeError: the declared schedules cannot be read", result.stderr
    assert time.monotonic() - started < EXIT_SECONDS
