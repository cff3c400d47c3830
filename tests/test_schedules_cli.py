"""`jobledger schedules ...` against a real `jobledger serve --demo` on a loopback port."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from jobledger.services.cli.common import Exit
from jobledger.services.cli.main import main
from jobledger.services.cli.schedules import parse_duration
from tests.support.api_harness import demo_server
from tests.support.procs import ServerProcess, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with demo_server(tmp_path_factory.mktemp("cli")) as process:
        yield process


def run(
    server: ServerProcess, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    code = main(["schedules", *args, "--server", server.url])
    out, err = capsys.readouterr()
    return code, out, err


def test_add_list_show_pause_resume_trigger_remove(
    server: ServerProcess, capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(server, capsys, "add", "hourly", "echo", "--cron", "0 * * * *",
                       "--timezone", "Europe/Berlin", "--payload", '{"a": 1}')
    assert code == 0 and json.loads(out)["trigger"] == {"type": "cron", "expression": "0 * * * *"}
    code, out, _ = run(server, capsys, "add", "emails", "echo", "--every", "1h30m",
                       "--max-instances", "2")
    assert code == 0
    assert json.loads(out)["trigger"] == {"type": "interval", "hours": 1, "minutes": 30}
    assert run(server, capsys, "add", "report", "echo", "--manual", "--payload", '"r"')[0] == 0

    code, out, _ = run(server, capsys, "list")
    assert code == 0
    for cell in ("hourly", "cron 0 * * * * (Europe/Berlin)", "every 1h30m", "report", "manual"):
        assert cell in out
    code, out, _ = run(server, capsys, "show", "emails")
    assert (code, json.loads(out)["max_instances"]) == (0, 2)
    code, out, _ = run(server, capsys, "pause", "hourly")
    assert (code, json.loads(out)["state"]) == (0, "paused")
    code, out, _ = run(server, capsys, "resume", "hourly")
    assert (code, json.loads(out)["state"]) == (0, "active")
    code, out, _ = run(server, capsys, "trigger", "report", "--wait")
    task = json.loads(out[out.index("{"):])  # after the id and a line per stage
    assert code == 0 and task["result"] == "r" and out.startswith(task["task_id"] + "\n")
    code, out, _ = run(server, capsys, "remove", "report")
    assert (code, out.strip()) == (0, "removed report")
    code, _, err = run(server, capsys, "show", "report")
    assert code == 1 and "JOB_NOT_FOUND" in err


def test_bad_input_is_refused_naming_the_field(
    server: ServerProcess, capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(server, capsys, "add", "bad", "echo", "--cron", "0 25 * * *")
    assert code == 2 and "--cron '0 25 * * *'" in err and "out of range" in err
    code, _, err = run(server, capsys, "add", "bad", "echo", "--every", "5 minutes")
    assert code == 2 and "--every" in err
    code, _, err = run(server, capsys, "add", "bad", "echo", "--manual", "--timezone", "Mars/Base")
    assert code == 2 and "timezone" in err
    run(server, capsys, "add", "twice", "echo", "--manual")
    code, _, err = run(server, capsys, "add", "twice", "echo", "--manual")
    assert code == 1 and "JOB_EXISTS" in err


def test_a_refused_value_is_named_by_its_flag_not_its_json_path(
    server: ServerProcess, capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(server, capsys, "add", "bad", "echo", "--at", "soon")
    assert (code, err) == (2, "error: --at: Invalid RFC3339 encoded datetime (INVALID_TRIGGER)\n")
    code, _, err = run(server, capsys, "add", "bad", "echo", "--manual", "--timeout", "-1")
    assert code == 2 and err.startswith("error: --timeout: ") and "$." not in err


def test_a_failed_trigger_wait_is_exit_1(
    server: ServerProcess, capsys: pytest.CaptureFixture[str],
) -> None:
    run(server, capsys, "add", "doomed", "fail", "--manual", "--max-retries", "0")
    code, out, _ = run(server, capsys, "trigger", "doomed", "--wait-timeout", "20")
    assert (code, json.loads(out[out.index("{"):])["status"]) == (Exit.FAILED, "dead_letter")


def test_an_unreachable_server_is_exit_3() -> None:
    assert main(["schedules", "list", "--server", f"127.0.0.1:{free_port()}"]) == Exit.UNREACHABLE


def test_durations() -> None:
    assert parse_duration("90s") == {"seconds": 90.0}
    assert parse_duration("1w2d3h4m5s") == {"weeks": 1, "days": 2, "hours": 3, "minutes": 4,
                                           "seconds": 5.0}
    with pytest.raises(ValueError, match="1x"):
        parse_duration("1x")
