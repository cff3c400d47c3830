"""services/cli/logs.py: --log-level and --log-format, the text and JSON formats, and what
a real `jobledger serve` writes while jobs fail, retry, dead-letter and complete."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from jobledger.services.cli.logs import JsonFormatter, TextFormatter, configure
from jobledger.services.cli.main import build_parser, main
from jobledger.services.runtime.server_log import note
from tests.support.procs import ServerProcess, poll

TASK = {"task_id": "t-1", "task_type": "send_email", "attempt": 2, "worker": "w1"}


def _record(message: str, *args: object, fields: dict[str, Any] | None = None,
            name: str = "jobledger.jobs", exc: bool = False) -> logging.LogRecord:
    record = logging.LogRecord(name, logging.INFO, __file__, 1, message, args,
                               sys.exc_info() if exc else None)
    record.created = 1717243387.123  # 2024-06-01T12:03:07.123Z
    if fields is not None:
        record.fields = fields
    return record


def test_json_lines_carry_the_event_and_its_fields() -> None:
    line = JsonFormatter().format(_record("task %s failed", "t-1",
                                          fields={"event": "job.retried", **TASK}))
    assert "\n" not in line
    assert json.loads(line) == {
        "time": "2024-06-01T12:03:07.123Z", "level": "info", "logger": "jobledger.jobs",
        "event": "job.retried", **TASK, "trace_id": None, "span_id": None,
        "message": "task t-1 failed"}


def test_every_json_line_has_the_job_and_trace_keys_and_a_spans_ids_inside_one() -> None:
    """A line about no job has them null; one logged inside a span carries its ids."""
    plain = json.loads(JsonFormatter().format(_record("started", fields={"event": "x"})))
    assert [plain[k] for k in ("task_id", "task_type", "attempt", "worker", "trace_id",
                               "span_id")] == [None] * 6
    tracer = TracerProvider().get_tracer("tests")
    with tracer.start_as_current_span("attempt") as span:
        inside = json.loads(JsonFormatter().format(_record("step", fields=TASK)))
    context = span.get_span_context()
    assert inside["trace_id"] == f"{context.trace_id:032x}" and len(inside["trace_id"]) == 32
    assert inside["span_id"] == f"{context.span_id:016x}" and inside["task_id"] == "t-1"


def test_a_json_line_of_another_library_is_event_log_with_its_traceback() -> None:
    try:
        raise KeyError("k")
    except KeyError:
        record = _record("heartbeat failed\nagain", name="aiokafka", exc=True)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert (parsed["event"], parsed["logger"]) == ("log", "aiokafka")
    assert parsed["message"] == "heartbeat failed\nagain"
    assert "KeyError: 'k'" in parsed["exc"]


def test_text_is_one_line_for_people() -> None:
    line = TextFormatter().format(_record("task %s failed:\nboom", "t-1",
                                          fields={"event": "job.retried", **TASK}))
    assert line.endswith(" INFO    task t-1 failed:\\nboom")
    assert line.startswith("2024-06-0") and "\n" not in line  # local time, milliseconds
    assert ".123 " in line
    other = TextFormatter().format(_record("heartbeat failed", name="aiokafka"))
    assert other.endswith("INFO    aiokafka: heartbeat failed")  # not ours: says whose


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root, ours = logging.getLogger(), logging.getLogger("jobledger")
    handlers, levels = list(root.handlers), (root.level, ours.level)
    yield
    root.handlers[:] = handlers
    root.setLevel(levels[0])
    ours.setLevel(levels[1])


def test_auto_is_text_on_a_terminal_and_json_elsewhere(restore_logging: None) -> None:
    log = logging.getLogger("jobledger.node")
    terminal, pipe = _Terminal(), io.StringIO()
    configure("info", "auto", terminal)
    note(log, logging.INFO, "node.started", "started: %s", "here", worker="w1")
    configure("info", "auto", pipe)  # replaces the terminal's handler
    note(log, logging.INFO, "node.started", "started: %s", "there", worker="w1")
    assert terminal.getvalue().count("\n") == 1 and "started: here" in terminal.getvalue()
    assert json.loads(pipe.getvalue())["message"] == "started: there"


def test_the_level_is_jobledgers_while_other_libraries_stay_at_warning(
    restore_logging: None,
) -> None:
    out = io.StringIO()
    configure("debug", "json", out)
    logging.getLogger("jobledger.jobs").debug("completed")
    logging.getLogger("aiokafka").info("joined the group")
    logging.getLogger("aiokafka").warning("heartbeat failed")
    assert [json.loads(line)["message"] for line in out.getvalue().splitlines()] == \
        ["completed", "heartbeat failed"]


@pytest.mark.parametrize("command", [["serve"], ["replay"], ["api", "--broker", "kafka://k:1"],
                                     ["worker", "--broker", "kafka://k:1", "--demo"]])
def test_every_long_running_command_has_both_flags(command: list[str]) -> None:
    args = build_parser().parse_args([*command, "--log-level", "DEBUG", "--log-format", "json"])
    assert (args.log_level, args.log_format) == ("debug", "json")
    defaults = build_parser().parse_args(command)
    assert (defaults.log_level, defaults.log_format) == ("info", "auto")


def test_a_bad_format_is_named_by_its_flag(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--log-format", "yaml"])
    assert exit_.value.code == 2
    assert "--log-format: invalid choice: 'yaml'" in capsys.readouterr().err
    monkeypatch.setenv("JOBLEDGER_LOG_LEVEL", "loud")
    with pytest.raises(SystemExit):
        main(["serve"])
    assert ("JOBLEDGER_LOG_LEVEL (the variable of --log-level): invalid choice: 'loud'"
            in capsys.readouterr().err)


# -- a real server ------------------------------------------------------------------------


def _serve_jobs(tmp_path: Path, flags: list[str], *jobs: dict[str, Any]
                ) -> tuple[list[str], list[str]]:
    """Run the jobs (request bodies) on a real `serve --demo` with flags until they are
    finished, stop it; the task ids and every line it wrote."""
    server = ServerProcess(tmp_path / "j.db", "--demo", *flags)
    try:
        server.wait_healthy()
        ids = [str(server.http.post("/api/v1/tasks", json=job).raise_for_status()
                   .json()["task_id"]) for job in jobs]
        for task_id in ids:
            poll(lambda t=task_id: server.finished(t), 20)  # type: ignore[misc]
    finally:
        server.stop()
    return ids, Path(server.log.name).read_text().splitlines()


@pytest.mark.slow
def test_serve_logs_json_lines_of_failures_retries_and_dead_letters(tmp_path: Path) -> None:
    (failing, flaky, echo), output = _serve_jobs(
        tmp_path, ["--log-format", "json", "--log-level", "info"],
        {"task_type": "fail", "max_retries": 1, "payload": {"message": "no luck"}},
        {"task_type": "flaky", "payload": {"fail_times": 1}},
        {"task_type": "echo", "payload": {"password": "hunter2"}})
    lines = [json.loads(line) for line in output if line.startswith("{")]
    events = [(line["event"], line.get("task_id")) for line in lines]
    assert events[0] == ("node.started", None)
    assert events[-2:] == [("node.stopping", None), ("node.stopped", None)]
    jobs = [line for line in lines if line["event"].startswith("job.") and
            line["event"] != "job.log"]
    assert sorted((j["event"], j["task_type"], j["attempt"]) for j in jobs) == [
        ("job.dead_letter", "fail", 2), ("job.retried", "fail", 1), ("job.retried", "flaky", 1)]
    worker = lines[0]["worker"]
    # The handlers' ctx.log lines (info and up) go through the same log, about their job.
    handler_lines = [line for line in lines if line["event"] == "job.log"]
    assert sorted((h["task_type"], h["attempt"], h["level"]) for h in handler_lines) == [
        ("fail", 1, "error"), ("fail", 2, "error"), ("flaky", 1, "warning")]
    for line in handler_lines:
        assert line["logger"] == "jobledger.handlers" and line["worker"] == worker
        assert line["task_id"] in (failing, flaky) and "span_id" in line
    assert next(h for h in handler_lines if h["task_type"] == "fail")["details"] == {
        "attempt": 1}
    for job in jobs:
        assert job["task_id"] in (failing, flaky) and job["worker"] == worker
        assert job["level"] == "info" and job["time"].endswith("Z")
    assert next(j for j in jobs if j["event"] == "job.dead_letter")["error"] == \
        "RuntimeError: no luck"
    assert not any(echo in line for line in output)  # completed: at debug only


@pytest.mark.slow
def test_serve_logs_one_text_line_each_and_completed_jobs_at_debug(tmp_path: Path) -> None:
    (failing, echo), output = _serve_jobs(
        tmp_path, ["--log-format", "text", "--log-level", "debug"],
        {"task_type": "fail", "max_retries": 0},
        {"task_type": "echo", "payload": {"password": "hunter2"}})
    logged, dead = [line for line in output if failing in line]
    assert " ERROR   task " in logged and logged.endswith(": failing on purpose")  # ctx.log
    assert " INFO    task " in dead and "(fail) attempt 1 on " in dead
    assert dead.endswith("failed: RuntimeError: the fail job always fails; "
                         "dead letter after 1 failed attempt")
    [completed] = [line for line in output if echo in line]
    assert " DEBUG   task " in completed and "(echo) attempt 1 on " in completed
    assert not any("hunter2" in line for line in output)  # neither its payload nor its result
    assert any(" INFO    started: log " in line for line in output)
    assert not any(line.startswith("{") for line in output)
