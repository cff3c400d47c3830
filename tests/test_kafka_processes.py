"""The scale-out mode as processes on a real test broker: `jobledger api` and two
`jobledger worker`s; one worker is SIGKILLed in the middle of 2,000 jobs.

One run (the module's `run` fixture) is examined by the tests below: every job reaches a
terminal state and none is lost; a job that ran twice shows two attempts and is counted
once; an API node started late catches up and serves the same read models as the first;
`jobledger replay --broker` rebuilds the same read models from the topics.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jobledger.services.log.kafka import murmur2_partition
from jobledger.services.replay.rebuild import checksums
from jobledger.services.write.producer import job_id_for_key
from tests.support.kafka_app import DOOMED
from tests.support.kafka_broker import TansuBroker, unique_prefix
from tests.support.kafka_harness import PARTITIONS
from tests.support.kafka_procs import ApiProcess, JobledgerProcess, WorkerProcess, kafka_env
from tests.support.procs import poll

pytestmark = pytest.mark.slow

JOBS = 2000
BATCH = 200
KILL_AFTER = 500  # completed jobs before the doomed worker is killed
WORKER_ARGS = ("--app", "kafka_app:app", "--concurrency", "8", "--lease-seconds", "2",
               "--shutdown-grace-seconds", "1", "--log-level", "info")  # fmt: skip
UNFINISHED = "SELECT count(*) FROM jobs WHERE status IN ('scheduled', 'pending', 'in_progress')"


@dataclass
class Run:
    workdir: Path
    env: dict[str, str]
    first: ApiProcess
    late: ApiProcess
    enqueued: list[str]
    twice: list[str]  # hung in the killed worker: they must have run again elsewhere
    killed_worker: str  # the worker id of the killed process
    survivor: str  # the worker id of the other
    cluster: dict[str, Any]  # GET /api/v1/cluster once the survivor owned every jobs partition


def _keys_on_every_partition() -> list[str]:
    """Idempotency keys whose jobs land one on each partition of the jobs topic."""
    keys: dict[int, str] = {}
    n = 0
    while len(keys) < PARTITIONS:
        key = f"hang-{n}"
        keys.setdefault(murmur2_partition(job_id_for_key(key), PARTITIONS), key)
        n += 1
    return list(keys.values())


def _took_over(worker: WorkerProcess, count: int) -> Any:
    return lambda: worker.check_running() or worker.output().count("took over jobs") >= count


@pytest.fixture(scope="module")
def run(kafka_broker: TansuBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    workdir = tmp_path_factory.mktemp("kafka-processes")
    env = kafka_env(kafka_broker, unique_prefix())
    procs: list[JobledgerProcess] = []
    try:
        first = ApiProcess("api-first", workdir, env)
        doomed = WorkerProcess("worker-doomed", workdir, {**env, DOOMED: "1"}, *WORKER_ARGS)
        procs += [first, doomed]
        first.wait_healthy()
        poll(_took_over(doomed, PARTITIONS), 30)  # alone in the group: it owns every partition
        twice = _submit(first, [{"task_type": "hang_if_doomed", "idempotency_key": k}
                                for k in _keys_on_every_partition()])  # fmt: skip
        poll(lambda: _count(first, "in_progress") == len(twice), 30)
        survivor = WorkerProcess("worker-survivor", workdir, env, *WORKER_ARGS)
        procs.append(survivor)
        poll(_took_over(survivor, 1), 30)  # the group split the partitions between the two

        enqueued = [*twice]
        for _ in range(JOBS // BATCH):
            enqueued += _submit(first, [{"task_type": "noop"}] * BATCH)
        poll(lambda: _count(first, "completed") >= KILL_AFTER, 60, interval=0.02)
        killed_worker = _worker_id(first, doomed.pid)
        doomed.kill()  # mid-run, holding the leases of its hung attempts
        poll(lambda: _finished(first, len(enqueued)), 90, interval=0.2)
        poll(lambda: _status(first, killed_worker) == "lost", 30, interval=0.2)
        survivor_id = _worker_id(first, survivor.pid)
        cluster = _cluster_once_settled(first, survivor_id)

        late = ApiProcess("api-late", workdir, env)
        procs.append(late)
        late.wait_healthy()
        survivor.stop()  # nothing appends any more: both API nodes can reach the same end
        poll(lambda: first.health()["projection_lag_ms"] == 0
             and late.health()["projection_lag_ms"] == 0, 30)  # fmt: skip
        yield Run(workdir, env, first, late, enqueued, twice, killed_worker, survivor_id, cluster)
    finally:
        for proc in reversed(procs):
            proc.stop()


def _submit(api: ApiProcess, tasks: list[dict[str, Any]]) -> list[str]:
    response = api.http.post("/api/v1/tasks/batch", json={"tasks": tasks})
    assert response.status_code == 201, response.text
    return list(response.json()["task_ids"])


def _worker_id(api: ApiProcess, pid: int) -> str:
    [worker_id] = [w["worker_id"] for w in api.get("/api/v1/workers") if w["pid"] == pid]
    return str(worker_id)


def _cluster_once_settled(api: ApiProcess, owner: str) -> dict[str, Any]:
    """/api/v1/cluster once every jobs partition shows `owner`, else as it is after 30 s
    (the test then says what it shows)."""
    def settled() -> dict[str, Any] | None:
        cluster: dict[str, Any] = api.get("/api/v1/cluster")
        owners = {p["owner"] for p in cluster["partitions"] if p["topic"] == "jobs"}
        return cluster if owners == {owner} else None

    try:
        return poll(settled, 30, interval=0.2)  # type: ignore[no-any-return]
    except TimeoutError:
        return api.get("/api/v1/cluster")  # type: ignore[no-any-return]


def _status(api: ApiProcess, worker_id: str) -> str:
    return str(api.rows("SELECT status FROM workers WHERE worker_id = ?", worker_id)[0][0])


def _count(api: ApiProcess, status: str) -> int:
    return int(api.rows("SELECT count(*) FROM jobs WHERE status = ?", status)[0][0])


def _finished(api: ApiProcess, total: int) -> bool:
    rows = api.rows(f"SELECT ({UNFINISHED}), (SELECT count(*) FROM jobs)")
    return rows[0] == (0, total)


def test_the_cluster_names_the_owner_of_each_partition_from_the_group(run: Run) -> None:
    """The workers' heartbeats name the jobs partitions each decides for: the surviving
    worker owns every one once the killed one left. The schedules partitions' owners are
    known only to a node that fires them, and this API node fires none."""
    partitions = run.cluster["partitions"]
    assert run.cluster["mode"] == "kafka"
    jobs = [p for p in partitions if p["topic"] == "jobs"]
    assert len(jobs) == PARTITIONS and {p["owner"] for p in jobs} == {run.survivor}
    assert {p["owner"] for p in partitions if p["topic"] != "jobs"} == {None}
    assert all(p["lag"] == p["end_offset"] - p["projected"] >= 0 for p in partitions)


def test_every_job_reaches_a_terminal_state_and_none_is_lost(run: Run) -> None:
    statuses = dict(run.first.rows("SELECT job_id, status FROM jobs"))
    assert set(statuses) == set(run.enqueued)
    assert set(statuses.values()) == {"completed"}


def test_a_job_run_twice_shows_two_attempts_and_is_counted_once(run: Run) -> None:
    for job_id in run.twice:
        task = run.first.get(f"/api/v1/tasks/{job_id}")
        assert task["status"] == "completed" and task["attempt"] == 2
        assert task["result"] == {"attempt": 2}
        runs = run.first.rows(
            "SELECT attempt, status, error FROM runs WHERE job_id = ? ORDER BY attempt", job_id)
        assert [(a, s) for a, s, _ in runs] == [(1, "FAILED"), (2, "COMPLETED")]
        assert "LeaseExpired" in runs[0][2]
    stats = run.first.get("/api/v1/stats")
    assert stats["completed_count"] == len(run.enqueued)  # each job once, whatever its runs
    assert stats["by_task_type"]["hang_if_doomed"] == {"completed": len(run.twice)}


def test_the_killed_worker_shows_as_lost_and_the_stopped_one_as_stopped(run: Run) -> None:
    workers = {w["worker_id"]: w["status"] for w in run.first.get("/api/v1/workers")}
    assert workers.pop(run.killed_worker) == "lost"  # it left the group without a word
    assert list(workers.values()) == ["stopped"]  # the survivor, stopped with SIGTERM
    assert run.first.get("/api/v1/stats")["worker_count"] == 0


def test_an_api_node_started_late_serves_the_same_read_models(run: Run) -> None:
    for path in ("/api/v1/stats", "/api/v1/workers", "/api/v1/queues",
                 f"/api/v1/tasks/{run.twice[0]}", f"/api/v1/tasks/{run.enqueued[-1]}/runs"):
        assert run.late.get(path) == run.first.get(path), path
    assert run.late.health()["is_leader"] is False  # API nodes own no partition
    run.first.stop()
    run.late.stop()
    assert _checksums(run.late.views) == _checksums(run.first.views)


def test_replay_from_the_topics_gives_the_checksums_of_the_live_read_models(run: Run) -> None:
    run.first.stop()  # its read models are final (a no-op if an earlier test stopped it)
    out = run.workdir / "replayed.db"
    result = subprocess.run(
        [sys.executable, "-m", "jobledger.services.cli.main", "replay", "--out", str(out),
         "--live", str(run.first.views)],
        capture_output=True, text=True, timeout=120, env={**run.env, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    assert "≠" not in result.stdout and result.stdout.count("✓") >= 10, result.stdout
    assert _checksums(out) == _checksums(run.first.views)


def test_the_logs_tell_the_expired_leases_and_the_lost_worker(run: Run) -> None:
    """What the processes wrote: JSON lines (--log-format auto, and their stderr is no
    terminal). The survivor took the killed worker's partitions over and logs each lease
    it saw expire; the first API node logs the worker it marked lost."""
    survivor = _json_lines(run.workdir / "worker-survivor.log")
    # Also noop jobs the killed worker was running, if it was killed in the middle of some.
    expired = {line["task_id"]: line for line in survivor
               if line["event"] == "job.lease_expired" and line["task_type"] == "hang_if_doomed"}
    # Each is a job that ran twice. Not always all of them: on a loaded machine the group
    # can rebalance before the kill, and a partition the survivor gains is folded without
    # logging its history (server_log.py), so an expiry decided before it is not its line.
    assert expired and set(expired) <= set(run.twice)
    assert {(line["worker"], line["attempt"], line["status"]) for line in expired.values()} \
        == {(run.killed_worker, 1, "scheduled")}
    assert not [line for line in survivor if line["event"] == "job.completed"]  # debug only
    assert [line["event"] for line in survivor if line["event"].startswith("node.")] == \
        ["node.started", "node.stopping", "node.stopped"]
    api = _json_lines(run.workdir / "api-first.log")
    assert [line["worker"] for line in api if line["event"] == "worker.lost"] == \
        [run.killed_worker]
    assert not [line for line in api if line["event"].startswith("job.")]  # owners log jobs


def _json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def _checksums(views: Path) -> dict[str, str]:
    import asyncio

    return asyncio.run(checksums(views))
