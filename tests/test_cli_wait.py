"""`jobledger submit --wait` (services/cli/wait.py) against a real `jobledger serve --demo`:
the id first, one plain line per change when stdout is not a terminal, a rich status line
when it is, and the exit code of how the wait ended."""

from __future__ import annotations

import io
import json
import select
import subprocess
import sys
from collections.abc import Iterator

import pytest
from rich.console import Console

from jobledger.services.cli.common import Exit
from jobledger.services.cli.main import main
from jobledger.services.cli.wait import progress_view, stage_text
from tests.support.builders import task_detail
from tests.support.procs import ServerProcess, free_port, poll


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # Progress travels with heartbeats, a third of the lease: every 0.5 s here.
    process = ServerProcess(tmp_path_factory.mktemp("wait") / "j.db", "--demo",
                            "--lease-seconds", "1.5")
    try:
        process.wait_healthy()
        yield process
    finally:
        process.stop()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def finished_task(out: str) -> dict:  # type: ignore[type-arg]
    """The task JSON --wait prints last, after the id and the progress lines."""
    return json.loads(out[out.index("{"):])  # type: ignore[no-any-return]


@pytest.mark.slow
def test_the_id_first_then_a_line_per_change_then_the_task(
    server: ServerProcess, capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "submit", "sleep", "--payload", '{"seconds": 2}', "--wait",
                       "--server", server.url)
    task = finished_task(out)
    lines = out[: out.index("{")].splitlines()
    assert code == Exit.OK == 0 and task["status"] == "completed"
    assert lines[0] == task["task_id"]
    running = {f"in_progress, attempt 1, {n}/2 processed" for n in (0, 1)}
    assert running & set(lines)
    assert lines[-1] == "completed, attempt 1, 2/2 processed"
    assert len(lines) == len(set(lines))  # a line per change, none repeated


@pytest.mark.slow
def test_a_dead_letter_is_exit_1(server: ServerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "submit", "fail", "--max-retries", "0", "--wait",
                       "--server", server.url)
    assert (code, finished_task(out)["status"]) == (Exit.FAILED, "dead_letter")


@pytest.mark.slow
def test_a_wait_timeout_is_exit_4_and_says_so(
    server: ServerProcess, capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "submit", "sleep", "--payload", '{"seconds": 30}',
                         "--wait-timeout", "0.5", "--server", server.url)
    task_id = out.splitlines()[0]
    server.http.post(f"/api/v1/tasks/{task_id}/cancel")  # free the worker slot
    assert code == Exit.TIMEOUT == 4
    assert err.startswith("error: timed out") and err.count("\n") == 1
    assert f"task {task_id} is still " in err and "after 0.5 s" in err
    assert "cannot reach" not in err


@pytest.mark.slow
def test_the_id_comes_before_the_end_and_cancelled_is_exit_1(server: ServerProcess) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobledger.services.cli.main", "submit", "echo", "--delay", "60",
         "--wait", "--server", server.url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert select.select([proc.stdout], [], [], 20)[0], "no id printed"
        assert proc.stdout is not None
        task_id = proc.stdout.readline().strip()
        poll(lambda: server.task(task_id), timeout=5)
        assert server.http.post(f"/api/v1/tasks/{task_id}/cancel").status_code < 300
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == Exit.FAILED
    assert "scheduled" in out.splitlines()[0]
    assert finished_task(out)["status"] == "cancelled"


def test_an_unreachable_server_is_exit_3_with_the_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = run(capsys, "submit", "echo", "--wait", "--server", url)
    prefix = f"error: cannot reach the server: POST {url}/api/v1/tasks: "
    assert code == Exit.UNREACHABLE == 3 and out == ""
    assert err.startswith(prefix) and len(err.strip()) > len(prefix)


def test_a_wait_timeout_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["submit", "echo", "--wait-timeout", "0"])
    assert exit_.value.code == Exit.USAGE and "--wait-timeout" in capsys.readouterr().err


TASK = task_detail("in_progress", 2, 3, 10, 1)


def test_a_stage_in_words() -> None:
    assert stage_text(TASK) == "in_progress, attempt 2, 3/10 processed, 1 failed"
    assert stage_text(task_detail("pending")) == "pending"


def test_on_a_terminal_a_rich_status_line(capsys: pytest.CaptureFixture[str]) -> None:
    screen = io.StringIO()
    with progress_view(Console(file=screen, force_terminal=True, width=100)) as show:
        show(TASK)
    assert stage_text(TASK) in screen.getvalue()
    assert "\x1b[" in screen.getvalue()  # drawn in place, not a plain line
    assert capsys.readouterr().out == ""


def test_off_a_terminal_plain_lines(capsys: pytest.CaptureFixture[str]) -> None:
    with progress_view(None) as show:
        show(TASK)
        show(task_detail("completed", 2, 3, 10, 1))
    assert capsys.readouterr().out.splitlines() == [
        stage_text(TASK), "completed, attempt 2, 3/10 processed, 1 failed"]
