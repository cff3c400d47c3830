"""`jobledger submit --from-file` (services/cli/batch.py) against a live `jobledger serve
--demo`: 10,000 lines with bad ones among them give the exact counts, and every accepted
task is on the server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobledger import SyncClient
from jobledger.services.cli.common import Exit
from jobledger.services.cli.main import main
from tests.support.api_harness import demo_server
from tests.support.procs import ServerProcess, free_port, poll

pytestmark = pytest.mark.slow
LINES = 10_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with demo_server(tmp_path_factory.mktemp("batch")) as process:
        yield process


def line(n: int) -> tuple[str, str]:
    """Line n (from 1) of the file and what should become of it: accepted, duplicate,
    rejected or blank. Tasks wait an hour, so the server runs none of them."""
    task = {"task_type": "echo", "payload": {"n": n}, "delay_seconds": 3600, "queue": "import"}
    if n % 500 == 0:
        return "", "blank"
    if n % 97 == 0:
        return '{"task_type": "echo", "payload": ', "rejected"  # cut short: not JSON
    if n % 89 == 0:
        return json.dumps({**task, "priority": 999}), "rejected"
    if n % 101 == 0:
        return json.dumps({**task, "task_type": "ecko"}), "rejected"  # no such handler
    if n % 211 == 0:
        return json.dumps({**task, "surprise": 1}), "rejected"  # an unknown field
    if 9_000 < n <= 9_100:  # the keys of lines 8,001-8,100 again: duplicates of those taken
        first_taken = line(n - 1000)[1] == "accepted"
        keyed = json.dumps({**task, "idempotency_key": f"key-{n - 1000}"})
        return keyed, "duplicate" if first_taken else "accepted"
    if 8_000 < n <= 8_100:
        return json.dumps({**task, "idempotency_key": f"key-{n}"}), "accepted"
    return json.dumps(task), "accepted"


def test_ten_thousand_lines_exact_counts_and_nothing_accepted_lost(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    lines = [line(n) for n in range(1, LINES + 1)]
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(text for text, _ in lines) + "\n")
    outcome = {n: kind for n, (_, kind) in enumerate(lines, start=1)}
    code = main(["submit", "--from-file", str(path), "--batch-size", "700", "--format", "json",
                 "--server", server.url])
    summary = json.loads(capsys.readouterr().out)
    expected = {kind: sum(1 for k in outcome.values() if k == kind)
                for kind in ("accepted", "duplicate", "rejected")}
    assert code == Exit.FAILED  # some lines were rejected
    assert (summary["accepted"], summary["duplicates"], summary["rejected"]) == (
        expected["accepted"], expected["duplicate"], expected["rejected"])
    assert [r["line"] for r in summary["rejected_lines"]] == [
        n for n, kind in outcome.items() if kind == "rejected"]
    reasons = {r["line"]: r for r in summary["rejected_lines"]}
    assert reasons[97]["code"] == "MALFORMED_JSON"
    assert (reasons[89]["field"], reasons[89]["code"]) == ("priority", "INVALID_ARGUMENT")
    assert (reasons[101]["field"], reasons[101]["code"]) == ("task_type", "UNKNOWN_TASK_TYPE")
    assert reasons[211]["field"] == "surprise"
    accepted = {t["task_id"] for t in summary["tasks"] if not t["duplicate"]}
    with SyncClient(server.url) as client:  # the last batch may be a moment from the view
        poll(lambda: {t.task_id for t in client.list(queue="import", page_size=1000)}
             == accepted, 10)
    assert len(accepted) == expected["accepted"]
    duplicates = {t["line"]: t["task_id"] for t in summary["tasks"] if t["duplicate"]}
    by_line = {t["line"]: t["task_id"] for t in summary["tasks"]}
    assert all(task_id == by_line[n - 1000] for n, task_id in duplicates.items())


def test_the_table_summary_names_each_rejected_line(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "few.jsonl"
    path.write_text('{"payload": 1}\n{"task_type": "echo", "priority": 300}\n'
                    '{"task_type": "echo", "delay_seconds": 60}\n')
    code = main(["submit", "--from-file", str(path), "--format", "table", "--server",
                 server.url])
    out = capsys.readouterr().out
    assert code == Exit.FAILED
    assert out.splitlines()[0] == "accepted 1, duplicates 0, rejected 2"
    assert "│ 1    │ task_type: no task_type: give one in the line, or --type" in out
    assert "│ 2    │ priority: Expected `int` <= 255 (INVALID_ARGUMENT)" in out


def test_flags_fill_what_the_lines_leave_out(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "payloads.jsonl"
    path.write_text('{"payload": 1}\n{"payload": 2, "priority": 9}\n')
    code = main(["submit", "--from-file", str(path), "--type", "echo", "--priority", "200",
                 "--delay", "60", "--format", "json", "--server", server.url])
    ids = [t["task_id"] for t in json.loads(capsys.readouterr().out)["tasks"]]
    # A batch is answered once durable; the read model shows it a moment later.
    tasks = poll(lambda: all(map(server.task, ids)) and list(map(server.task, ids)), 10)
    assert code == Exit.OK
    assert [(t["task_type"], t["payload"], t["priority"]) for t in tasks] == [
        ("echo", 1, 200), ("echo", 2, 9)]


def test_no_server_stops_the_import_and_says_where(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text('{"task_type": "echo"}\n' * 3)
    code = main(["submit", "--from-file", str(path), "--format", "json", "--server",
                 f"127.0.0.1:{free_port()}"])
    out, err = capsys.readouterr()
    assert code == Exit.UNREACHABLE and json.loads(out)["accepted"] == 0
    assert err.startswith("error: stopped at line 1: cannot reach the server: POST ")
