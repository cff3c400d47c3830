"""The client commands of the CLI (services/cli/tasks.py, runs.py, watch.py, inspect.py)
against a live `jobledger serve --demo`, in each output format: tables checked for their
columns and values, JSON parsed and compared with the API's own answer, YAML parsed."""

from __future__ import annotations

import asyncio
import json
import select
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from jobledger import Client
from jobledger.services.cli.common import Exit
from jobledger.services.cli.main import main
from tests.support.api_harness import demo_server
from tests.support.procs import ServerProcess, poll

pytestmark = pytest.mark.slow
FORMATS = ("table", "json", "yaml")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with demo_server(tmp_path_factory.mktemp("cli")) as process:
        yield process


@pytest.fixture(scope="module")
def flaky(server: ServerProcess) -> str:
    """A task that failed once (logging a warning), then completed: two runs."""
    task_id = server.http.post("/api/v1/tasks", json={
        "task_type": "flaky", "payload": {"fail_times": 1}, "priority": 201}).json()["task_id"]
    poll(lambda: server.finished(task_id), timeout=30)
    return str(task_id)


@pytest.fixture
def cli(server: ServerProcess, capsys: pytest.CaptureFixture[str]) -> Any:
    def run(*args: str) -> tuple[int, str, str]:
        code = main([*args, "--server", server.url])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def parsed(out: str, fmt: str) -> Any:
    return json.loads(out) if fmt == "json" else yaml.safe_load(out)


def rows(out: str) -> list[list[str]]:
    """The cells of a rich table's rows, the header first."""
    return [[cell.strip() for cell in line.strip("│").split("│")]
            for line in out.splitlines() if line.startswith("│")]


def field_values(out: str) -> dict[str, str]:
    header, *body = rows(out)
    return {name: value for name, value in body}


def api(server: ServerProcess, path: str) -> Any:
    return server.http.get(path).json()


@pytest.mark.parametrize("fmt", FORMATS)
def test_status(cli: Any, server: ServerProcess, flaky: str, fmt: str) -> None:
    code, out, _ = cli("status", flaky, "--format", fmt)
    task = api(server, f"/api/v1/tasks/{flaky}")
    assert code == Exit.OK
    if fmt != "table":
        assert parsed(out, fmt) == task
        return
    values = field_values(out)
    assert rows(out)[0] == ["Field", "Value"]
    assert [name for name in values][:10] == [
        "ID", "Type", "Queue", "Status", "Priority", "Created", "Scheduled", "Started",
        "Finished", "Attempts"]
    assert (values["ID"], values["Type"], values["Status"], values["Priority"],
            values["Attempts"], values["Worker"]) == (
        flaky, "flaky", "completed", "201", "2", task["worker_id"])
    assert json.loads(values["Result"]) == task["result"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_list(cli: Any, server: ServerProcess, flaky: str, fmt: str) -> None:
    code, out, _ = cli("list", "--type", "flaky", "--status", "COMPLETED", "--format", fmt)
    listed = api(server, "/api/v1/tasks?task_type=flaky&status=completed")
    assert code == Exit.OK and flaky in [t["task_id"] for t in listed]
    if fmt != "table":
        assert parsed(out, fmt) == listed
        return
    header, *body = rows(out)
    assert header == ["ID", "Type", "Queue", "Status", "Priority", "Created", "Updated"]
    assert [r[0] for r in body] == [t["task_id"] for t in listed]
    assert body[0][1:5] == ["flaky", "default", "completed", "201"]


def test_list_pages_by_starting_after_offset_and_since(cli: Any, server: ServerProcess) -> None:
    ids = server.http.post("/api/v1/tasks/batch", json={"tasks": [
        {"task_type": "echo", "queue": "paging", "delay_seconds": 600}] * 5}).json()["task_ids"]
    poll(lambda: len(api(server, "/api/v1/tasks?queue=paging")) == 5, timeout=10)
    newest = [t["task_id"] for t in api(server, "/api/v1/tasks?queue=paging")]
    assert sorted(newest) == sorted(ids)
    _, first, _ = cli("list", "--queue", "paging", "--limit", "2", "--format", "json")
    _, rest, _ = cli("list", "--queue", "paging", "--starting-after",
                     json.loads(first)[-1]["task_id"], "--format", "json")
    _, skipped, _ = cli("list", "--queue", "paging", "--offset", "4", "--format", "json")
    _, recent, _ = cli("list", "--queue", "paging", "--since", "1h", "--format", "json")
    _, future, _ = cli("list", "--queue", "paging", "--since", "2999-01-01T00:00:00Z",
                       "--format", "json")
    assert [t["task_id"] for t in json.loads(first) + json.loads(rest)] == newest
    assert [t["task_id"] for t in json.loads(skipped)] == newest[4:]
    assert len(json.loads(recent)) == 5 and json.loads(future) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_history(cli: Any, server: ServerProcess, flaky: str, fmt: str) -> None:
    code, out, _ = cli("history", flaky, "--format", fmt)
    events = api(server, f"/api/v1/tasks/{flaky}/history")
    assert code == Exit.OK
    if fmt != "table":
        assert parsed(out, fmt) == events
        return
    header, *body = rows(out)
    assert header[:6] == ["Time", "Event", "Attempt", "Actor", "Worker", "Position"]
    assert [r[1] for r in body] == [e["type"] for e in events]
    assert body[0][3] == "api:anonymous" and body[1][2] == "1"
    assert body[0][5] == f"{events[0]['partition']}:{events[0]['offset']}"


@pytest.mark.parametrize("fmt", FORMATS)
def test_logs(cli: Any, server: ServerProcess, flaky: str, fmt: str) -> None:
    code, out, _ = cli("logs", flaky, "--attempt", "1", "--format", fmt)
    logs = api(server, f"/api/v1/runs/{flaky}.1")["logs"]
    assert code == Exit.OK and logs
    if fmt != "table":
        assert parsed(out, fmt) == logs
        return
    assert out.splitlines() == [
        f"{line['created_at']} {line['level']:<5} {line['message']} "
        f"{json.dumps(line['details'], separators=(',', ':'))}" for line in logs]


def test_logs_of_the_latest_run_and_follow(cli: Any, server: ServerProcess, flaky: str) -> None:
    code, out, _ = cli("logs", flaky, "--format", "json")
    assert code == Exit.OK and json.loads(out) == []  # the second run logged nothing
    task_id = server.http.post("/api/v1/tasks", json={
        "task_type": "fail", "payload": {"message": "boom"}, "max_retries": 0}).json()["task_id"]
    code, out, _ = cli("logs", task_id, "--follow", "--format", "json")
    assert code == Exit.FAILED  # the run it followed failed
    assert [json.loads(line) for line in out.splitlines()] == api(
        server, f"/api/v1/runs/{task_id}.1")["logs"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_stats(cli: Any, server: ServerProcess, flaky: str, fmt: str) -> None:
    code, out, _ = cli("stats", "--format", fmt)
    stats = api(server, "/api/v1/stats")
    assert code == Exit.OK
    if fmt != "table":
        assert parsed(out, fmt).keys() == stats.keys()
        assert parsed(out, fmt)["completed_count"] == stats["completed_count"]
        return
    values = field_values(out)
    assert rows(out)[0] == ["Metric", "Value"]
    assert list(values)[:2] == ["Pending Tasks", "In Progress"]
    assert values["Completed"] == str(stats["completed_count"])
    assert values["Workers"] == str(stats["worker_count"]) == "1"
    assert {"Queue (High)", "Queue (Normal)", "Queue (Low)"} <= values.keys()


@pytest.mark.parametrize("fmt", FORMATS)
def test_workers(cli: Any, server: ServerProcess, fmt: str) -> None:
    code, out, _ = cli("workers", "--format", fmt)
    workers = api(server, "/api/v1/workers")
    assert code == Exit.OK
    if fmt != "table":  # heartbeats move on between the two reads: compare what does not
        got = parsed(out, fmt)
        assert [(w["worker_id"], w.keys()) for w in got] == [
            (w["worker_id"], w.keys()) for w in workers]
        return
    header, *body = rows(out)
    assert header[:4] == ["Worker ID", "Tasks", "CPU %", "Memory MB"]
    assert [(r[0], r[4]) for r in body] == [(w["worker_id"], w["status"]) for w in workers]


@pytest.mark.parametrize("fmt", FORMATS)
def test_queues_pause_resume_and_depth(cli: Any, server: ServerProcess, fmt: str) -> None:
    queue = f"held-{fmt}"
    code, out, _ = cli("queues", "pause", queue, "--format", fmt)
    assert code == Exit.OK
    toggled = {"queue": queue, "paused": True}
    assert (out.strip() == f"{queue}: paused") if fmt == "table" else parsed(out, fmt) == toggled
    for priority in (200, 100, 10, 10):
        server.http.post("/api/v1/tasks", json={"task_type": "echo", "queue": queue,
                                                "priority": priority})
    code, out, _ = cli("queues", "--format", fmt)
    queues = api(server, "/api/v1/queues")
    mine = next(q for q in queues if q["queue"] == queue)
    assert code == Exit.OK and mine["pending_by_priority"] == {"high": 1, "normal": 1, "low": 2}
    if fmt != "table":
        assert parsed(out, fmt) == queues
    else:
        header, *body = rows(out)
        assert header == ["Queue", "Paused", "Pending", "Scheduled", "In Progress", "High",
                          "Normal", "Low"]
        assert [queue, "true", "4", "0", "0", "1", "1", "2"] in body
    code, out, _ = cli("queue-depth", "--queue", queue, "--format", fmt)
    if fmt != "table":
        assert parsed(out, fmt) == {"high": 1, "normal": 1, "low": 2}
    else:
        assert out.splitlines()[:4] == ["Queue Depth by Priority:", f"  High:{1:>10} " + "█" * 25,
                                        f"  Normal:{1:>8} " + "█" * 25,
                                        f"  Low:{2:>11} " + "█" * 50]
    assert cli("queues", "resume", queue)[0] == Exit.OK
    assert not next(q for q in api(server, "/api/v1/queues") if q["queue"] == queue)["paused"]


def test_queue_depth_of_every_queue_is_the_stats(cli: Any, server: ServerProcess) -> None:
    code, out, _ = cli("queue-depth", "--format", "json")
    assert code == Exit.OK
    assert json.loads(out) == api(server, "/api/v1/stats")["queue_depth_by_priority"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_cluster_status(cli: Any, server: ServerProcess, fmt: str) -> None:
    code, out, _ = cli("cluster-status", "--format", fmt)
    health, cluster = api(server, "/health"), api(server, "/api/v1/cluster")
    assert code == Exit.OK
    if fmt != "table":
        assert parsed(out, fmt).keys() == health.keys() | {"mode", "node_id", "partitions"}
        assert parsed(out, fmt)["status"] == health["status"] == "healthy"
        assert parsed(out, fmt)["mode"] == "embedded"
        return
    header, *body = rows(out)
    values = {row[0]: row[1] for row in body if len(row) == 2}
    assert header == ["Property", "Value"]
    assert (values["Mode"], values["Node"]) == ("embedded", cluster["node_id"])
    assert (values["Status"], values["Is Leader"], values["Connected Workers"]) == (
        "healthy", "true", "1")
    assert "Pending Tasks" in values
    partitions = [row for row in body if len(row) == 6]
    assert partitions[0] == ["Topic", "Partition", "Owner", "End", "Projected", "Lag"]
    jobs = [row for row in partitions if row[0] == "jobs"]
    assert jobs and {row[2] for row in jobs} == {cluster["node_id"]}  # it decides for all


def test_the_cluster_says_each_partition_end_and_lag(server: ServerProcess, flaky: str) -> None:
    cluster = api(server, "/api/v1/cluster")
    topics = {p["topic"] for p in cluster["partitions"]}
    assert topics == {"jobs", "logs", "workers", "schedules", "security"}
    for p in cluster["partitions"]:
        assert p["lag"] == p["end_offset"] - p["projected"] >= 0
        assert (p["owner"] is not None) == (p["topic"] in ("jobs", "schedules"))
    assert sum(p["end_offset"] for p in cluster["partitions"] if p["topic"] == "jobs") > 0


def test_cancel_and_requeue_say_each_outcome(cli: Any, server: ServerProcess, flaky: str) -> None:
    waiting = server.http.post("/api/v1/tasks", json={"task_type": "echo",
                                                      "delay_seconds": 600}).json()["task_id"]
    code, out, _ = cli("cancel", waiting, "nope", flaky)
    assert code == Exit.FAILED and out.splitlines() == [
        f"{waiting}: cancelled", "nope: refused: no task nope (NOT_FOUND)",
        f"{flaky}: refused: task {flaky} is already completed (CONFLICT)"]
    code, out, _ = cli("requeue", waiting)
    assert (code, out) == (Exit.OK, f"{waiting}: requeued: pending\n")
    assert api(server, f"/api/v1/tasks/{waiting}")["status"] in ("pending", "in_progress",
                                                                 "completed")


def test_submit_takes_type_payload_file_and_schedule_at(
    cli: Any, server: ServerProcess, tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    payload = tmp_path / "email.json"
    payload.write_text('{"to": "a@example.com"}')
    code, out, _ = cli("submit", "--type", "echo", "--payload-file", str(payload),
                       "--priority", "200", "--schedule-at", "2999-01-01T00:00:00Z")
    task = api(server, f"/api/v1/tasks/{out.strip()}")
    assert code == Exit.OK and (task["task_type"], task["payload"], task["priority"],
                                task["status"]) == ("echo", {"to": "a@example.com"}, 200,
                                                    "scheduled")
    assert task["scheduled_at"] == "2999-01-01T00:00:00.000Z"
    monkeypatch.setattr("sys.stdin", _Stdin('[1, 2]'))
    code, out, _ = cli("submit", "echo", "--payload-file", "-", "--delay", "600")
    assert code == Exit.OK and api(server, f"/api/v1/tasks/{out.strip()}")["payload"] == [1, 2]


class _Stdin:
    def __init__(self, text: str):
        self.text = text

    def read(self) -> str:
        return self.text


def test_as_of_on_status_list_stats_and_queues(cli: Any, server: ServerProcess,
                                               flaky: str) -> None:
    """--as-of a position before the task was enqueued, and the one the API names now."""
    now = server.http.get("/api/v1/stats", params={"as_of": "2001-01-01T00:00:00Z"})
    assert now.status_code == 200 and now.json()["completed_count"] == 0
    latest = server.http.get("/api/v1/queues", params={"as_of": "2001-01-01T00:00:00Z"})
    assert latest.json() == []
    for args in (("stats",), ("queues",), ("list",)):
        code, out, _ = cli(*args, "--as-of", "2001-01-01T00:00:00Z", "--format", "json")
        assert code == 0
        assert parsed(out, "json") == server.http.get(
            f"/api/v1/{'tasks' if args[0] == 'list' else args[0]}",
            params={"as_of": "2001-01-01T00:00:00Z"}).json()
    code, _, err = cli("status", flaky, "--as-of", "2001-01-01T00:00:00Z")
    assert code == Exit.FAILED and "as of 2001-01-01T00:00:00Z" in err
    then = server.http.get(f"/api/v1/tasks/{flaky}")
    task_position = server.http.get(f"/api/v1/tasks/{flaky}", params={
        "as_of": then.json()["updated_at"]}).headers["X-As-Of-Position"]
    code, out, _ = cli("status", flaky, "--as-of", task_position, "--format", "json")
    assert code == 0 and parsed(out, "json")["task_id"] == flaky
    code, _, err = cli("stats", "--as-of", "yesterday")
    assert code != 0 and "as_of" in err


@pytest.mark.parametrize(("args", "line"), [
    (("submit",), "error: give the task type (jobledger submit TYPE, or --type TYPE)"),
    (("submit", "echo", "--type", "fail"), "error: task type 'echo' and --type 'fail' differ"),
    (("submit", "echo", "--payload-file", "/nonexistent"),
     "error: --payload-file /nonexistent: cannot read it: No such file or directory"),
    (("queues", "pause"), "error: queues pause: give the queue's name"),
    (("list", "--limit", "-1"), "error: --limit -1: give 0 or more"),
])
def test_bad_arguments_are_one_line(cli: Any, args: tuple[str, ...], line: str) -> None:
    code, _, err = cli(*args)
    assert code == Exit.USAGE and err.startswith(line) and err.count("\n") == 1


def test_a_bad_schedule_at_names_the_flag(cli: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli("submit", "echo", "--schedule-at", "tomorrow")
    assert exit_.value.code == Exit.USAGE
    assert "--schedule-at: 'tomorrow' is not a time" in capsys.readouterr().err


async def _cursor_now(url: str) -> str | None:
    """A cursor of the server's present: a watch resumed from it gets what comes after."""
    async with Client(url) as client, client.watch() as updates:
        return updates.cursor


def test_watch_prints_updates_then_the_cursor_on_ctrl_c(server: ServerProcess) -> None:
    cursor = asyncio.run(_cursor_now(server.url))
    task_id = server.http.post("/api/v1/tasks", json={"task_type": "echo"}).json()["task_id"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobledger.services.cli.main", "watch", "--type", "echo",
         "--format", "json", "--resume-from", str(cursor), "--server", server.url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # Ctrl-C's default: a shell running the suite in the background starts it with
        # SIGINT ignored, which every child inherits (and watch then never sees the signal).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout is not None
        seen: list[dict[str, Any]] = []
        while not seen or seen[-1]["task"]["status"] != "completed":
            assert select.select([proc.stdout], [], [], 20)[0], "no update within 20 s"
            seen.append(json.loads(proc.stdout.readline()))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.communicate()  # closes the pipes, also after a timeout
    assert {u["type"] for u in seen} == {"task_update"}
    assert seen[-1]["task"]["task_id"] == task_id and proc.returncode == 130
    assert f"cursor: {seen[-1]['cursor']} (resume with: jobledger watch --resume-from " in err


def test_causes_walk_a_retried_task_back_to_its_request(cli: Any, server: ServerProcess) -> None:
    """Every event of a task carries the id of the request that enqueued it, and `causes`
    walks from its JobSucceeded back through the retry to the JobEnqueued and the request."""
    request_id = f"req-{uuid.uuid4()}"
    reply = server.http.post("/api/v1/tasks", headers={"X-Request-ID": request_id}, json={
        "task_type": "flaky", "payload": {"fail_times": 1}})
    assert reply.headers["x-request-id"] == request_id
    task_id = reply.json()["task_id"]
    poll(lambda: server.finished(task_id), timeout=30)
    events = api(server, f"/api/v1/tasks/{task_id}/history")
    assert {e["correlation_id"] for e in events} == {request_id}
    code, out, _ = cli("causes", events[-1]["event_id"], "--format", "json")
    chain = json.loads(out)
    assert code == Exit.OK
    assert [e["type"] for e in chain] == [
        "JobSucceeded", "JobPicked", "JobDue", "JobFailed", "JobPicked", "JobEnqueued"]
    causes = [e["causation_id"] for e in chain]
    assert causes == [e["event_id"] for e in chain[1:]] + [request_id]
    assert [e["attempt"] for e in chain] == [2, 2, None, 1, 1, None]
    code, out, _ = cli("causes", events[-1]["event_id"])
    assert code == Exit.OK and "JobEnqueued" in out and "JobSucceeded" in out
    assert cli("causes", "no-such-event")[0] != Exit.OK
