"""--log-retention: the log's older records are cut, the read models at the cut (the base)
kept instead; unfinished work keeps its records, rebuilds start from the base, the chain
verifies from the cut, and answers before it are refused (issue 22, section 5)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from jobledger.schemas import JOBS, SCHEDULES, SECURITY
from jobledger.schemas.common import iso_ms, to_ms
from jobledger.services.audit.verify import parse_anchor
from jobledger.services.cli.common import Exit
from jobledger.services.cli.main import main
from jobledger.services.history.log_retention import Retained, base_path, build_base
from jobledger.services.log.protocol import DataFileError
from jobledger.services.node.embedded import EmbeddedNode, NodeConfig, views_path
from jobledger.services.replay.rebuild import checksums, replay
from jobledger.services.runtime.clock import ManualClock
from jobledger.services.runtime.dispatcher import DispatcherConfig
from tests.support.api_harness import api_client, assert_error, handlers, submit
from tests.support.harness import settle, wait_until
from tests.support.procs import ServerProcess, poll

AGE = timedelta(hours=1)
Rows = dict[tuple[str, int], list[tuple[int, int, str]]]  # slot -> (offset, time, key)


def config(db: Path, **more: object) -> NodeConfig:
    settings: dict[str, object] = {"log_retention": AGE, "snapshot_every_events": 0, **more}
    return NodeConfig(db=db, dispatcher=DispatcherConfig(shutdown_grace_seconds=0.0),
                      **settings)  # type: ignore[arg-type]


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[EmbeddedNode]:
    node = EmbeddedNode(config(tmp_path / "j.db"), handlers, clock=ManualClock(datetime.now(UTC)))
    await node.start()
    yield node
    await node.stop()


def log_rows(db: Path) -> Rows:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out: Rows = {}
        for topic, part, offset, ts, key in conn.execute(
                "SELECT topic, partition, offset, timestamp_ms, key FROM records"
                " ORDER BY topic, partition, offset"):
            out.setdefault((topic, part), []).append((offset, ts, key))
        return out
    finally:
        conn.close()


@dataclass
class Cut:
    old: list[str]  # finished before the cut's moment
    waiting: str  # enqueued before it, due a day later: unfinished at the cut
    new: str  # enqueued after it
    recorded: int  # the cut's moment: every record of old and waiting is at or before it
    before: Rows  # the log before the cut


async def cut_log(node: EmbeddedNode, client: httpx.AsyncClient, cut: bool = True,
                  snapshot: bool = False) -> Cut:
    """Old finished tasks and a waiting one, a moment, a new task; then a cut at the moment.
    snapshot: take an as_of snapshot half-way through the old tasks."""
    waiting = await submit(client, task_type="echo", delay_seconds=86_400)
    jobs = node.backend.topic(JOBS)
    old: list[str] = []
    for half in range(2):
        old += [await submit(client, task_type="echo", payload=len(old) + i) for i in range(3)]
        # ... and at least one after it in its partition, which is then cut around it.
        while half and len(old) < 40 and not any(
                jobs.partition_for(t) == jobs.partition_for(waiting) for t in old):
            old.append(await submit(client, task_type="echo", payload=len(old)))
        for task in old:
            await wait_until(node, task, "completed")
        if snapshot and not half:
            await settle(node)
            assert node.history.snapshots is not None
            await node.history.snapshots.take(views_path(node.config.db))
    # A schedule defined before the moment, and one defined and deleted after it.
    for schedule in ("kept", "gone"):
        answer = await client.post("/api/v1/schedules", json={
            "id": schedule, "task_type": "echo", "trigger": "manual"})
        assert answer.status_code == 201, answer.text
    assert (await client.delete("/api/v1/schedules/gone")).status_code in (200, 204)
    await settle(node)
    recorded = int(time.time() * 1000)
    while int(time.time() * 1000) <= recorded:  # the next records are stamped after it
        time.sleep(0.001)
    new = await submit(client, task_type="echo", payload="new")
    await wait_until(node, new, "completed")
    await settle(node)
    before = log_rows(node.config.db)
    clock = node.clock
    assert isinstance(clock, ManualClock) and node.log_retention is not None
    # now - AGE == recorded: the records at or before the moment are older than AGE.
    clock.advance((recorded - to_ms(clock.now())) / 1000 + AGE.total_seconds())
    await settle(node)
    if cut:
        await node.log_retention.cut()  # (or the hourly pass the clock just woke did it)
    return Cut(old, waiting, new, recorded, before)


async def test_the_cut_keeps_the_tail_unfinished_jobs_and_one_record_a_partition(
        node: EmbeddedNode) -> None:
    async with api_client(node) as client:
        cut = await cut_log(node, client)
    assert node.log_retention is not None and node.log_retention.deleted > 0
    after = log_rows(node.config.db)
    kept = {(slot, offset) for slot, rows in after.items() for offset, _, _ in rows}
    starts = node.retained.starts
    waiting_partition = node.backend.topic(JOBS).partition_for(cut.waiting)
    for slot, rows in cut.before.items():
        topic, partition = slot
        for offset, ts, key in rows[:-1]:  # the last: kept if it still is the last
            must_stay = (ts > cut.recorded or key == cut.waiting or topic in (SECURITY,
                                                                               SCHEDULES)
                         or (slot == (JOBS, waiting_partition)
                             and offset >= min(o for o, _, k in rows if k == cut.waiting)))
            assert ((slot, offset) in kept) == must_stay, (slot, offset, ts, key)
        first = after[slot][0][0]
        assert starts.get(topic, {}).get(partition, 0) == first
        assert [o for o, _, _ in after[slot]] == list(range(first, after[slot][-1][0] + 1))
    assert node.retained.time_ms <= cut.recorded
    assert "kept" in {key for _, _, key in after[("schedules", 0)]}  # a schedule's definition
    assert base_path(views_path(node.config.db)).exists()


async def test_answers_before_the_cut_are_refused_and_after_it_start_from_the_base(
        node: EmbeddedNode) -> None:
    async with api_client(node) as client:
        cut = await cut_log(node, client)
        earliest = iso_ms(node.retained.time_ms)
        before = iso_ms(node.retained.time_ms - 1)
        refused = await client.get("/api/v1/stats", params={"as_of": before})
        assert_error(refused, 400, "AS_OF_BEFORE_RETAINED", "as_of")
        assert earliest is not None and earliest in refused.json()["error"]
        assert_error(await client.get("/api/v1/tasks", params={"as_of": "jobs/0:0"}),
                     400, "AS_OF_BEFORE_RETAINED", "as_of")
        then = await client.get("/api/v1/tasks", params={"as_of": iso_ms(cut.recorded)})
        assert then.status_code == 200
        assert {t["task_id"]: t["status"] for t in then.json()} == {
            **dict.fromkeys(cut.old, "completed"), cut.waiting: "scheduled"}
        one = await client.get(f"/api/v1/tasks/{cut.old[0]}",
                               params={"as_of": iso_ms(cut.recorded)})
        assert one.status_code == 200 and one.json()["status"] == "completed"
        assert one.json()["result"] == 0
        span = (await client.get("/api/v1/history/span")).json()
        assert span["first_time"] == earliest
        jobs = node.backend.topic(JOBS)
        unpinned = next(t for t in cut.old
                        if jobs.partition_for(t) != jobs.partition_for(cut.waiting))
        history = await client.get(f"/api/v1/tasks/{unpinned}/history")
        assert history.status_code == 200
        assert int(history.headers["X-History-Events-Cut"]) >= 1
        assert history.headers["X-History-Retained-From"] == earliest
        assert all(e["event"] is not None for e in history.json())
        whole = await client.get(f"/api/v1/tasks/{cut.waiting}/history")
        assert "X-History-Events-Cut" not in whole.headers
        assert [e["type"] for e in whole.json()][0] == "JobEnqueued"


async def test_an_as_of_after_the_cut_never_folds_from_a_snapshot_before_it(
        node: EmbeddedNode) -> None:
    async with api_client(node) as client:
        cut = await cut_log(node, client, snapshot=True)
        then = await client.get("/api/v1/tasks", params={"as_of": iso_ms(cut.recorded)})
        assert {t["task_id"]: t["status"] for t in then.json()} == {
            **dict.fromkeys(cut.old, "completed"), cut.waiting: "scheduled"}
        stats = (await client.get("/api/v1/stats", params={"as_of": iso_ms(cut.recorded)}))
        assert stats.json()["completed_count"] == len(cut.old)


async def test_a_start_finishes_a_cut_a_crash_interrupted(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    node = EmbeddedNode(config(db), handlers, clock=ManualClock(datetime.now(UTC)))
    await node.start()
    try:
        assert node.log_retention is not None
        await node.log_retention.stop()  # no hourly pass: this test cuts by hand
        async with api_client(node) as client:
            await cut_log(node, client, cut=False)
            starts = await node.log_retention.plan()
            # The base is written, and the process dies before the log records the cut.
            await build_base(node.backend, base_path(views_path(db)), starts)
            assert not node.retained.cut
    finally:
        await node.stop()
    kept = EmbeddedNode(config(db, log_retention=None), handlers)  # the flag is not needed
    await kept.start()
    try:
        assert kept.retained.starts == starts
        rows = log_rows(db)
        for topic, parts in starts.items():
            for partition, start in parts.items():
                assert rows[(topic, partition)][0][0] == start
    finally:
        await kept.stop()


async def test_read_models_rebuilt_after_a_cut_equal_the_live_ones(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    node = EmbeddedNode(config(db), handlers, clock=ManualClock(datetime.now(UTC)))
    await node.start()
    try:
        async with api_client(node) as client:
            await cut_log(node, client)
    finally:
        await node.stop()
    live = await checksums(views_path(db))
    assert await replay(db, tmp_path / "replayed.db", show_progress=False) == live
    # Read models deleted: the next start begins from the base and folds the tail.
    for suffix in ("", "-wal", "-shm"):
        Path(f"{views_path(db)}{suffix}").unlink(missing_ok=True)
    again = EmbeddedNode(config(db, run_workers=False, run_scheduler=False), handlers,
                         clock=ManualClock(datetime.now(UTC)))
    await again.start()
    await again.stop()  # (which appended a WorkerLost: the first's worker was alive)
    assert await checksums(views_path(db)) == await replay(db, tmp_path / "again.db",
                                                           show_progress=False)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


async def cut_and_stop(db: Path) -> tuple[Cut, Retained]:
    """A node over db that cuts its log (cut_log), stopped."""
    node = EmbeddedNode(config(db), handlers, clock=ManualClock(datetime.now(UTC)))
    await node.start()
    try:
        async with api_client(node) as client:
            return await cut_log(node, client), node.retained
    finally:
        await node.stop()


def test_verify_holds_from_the_cut_and_still_finds_a_changed_record(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "j.db"
    _, retained = asyncio.run(cut_and_stop(db))
    capsys.readouterr()
    code, out, _ = run(capsys, "verify", "--db", str(db))
    assert code == Exit.OK, out
    assert "cut by --log-retention" in out
    partition, start = next((p, o) for p, o in retained.starts[JOBS].items() if o)
    assert f"jobs/{partition}  offsets {start}.." in out
    conn = sqlite3.connect(db)
    conn.execute("UPDATE records SET value = CAST(value || X'20' AS BLOB) WHERE topic = 'jobs'"
                 " AND partition = ? AND offset = ?", (partition, start))  # one byte more
    conn.commit()
    conn.close()
    code, out, _ = run(capsys, "verify", "--db", str(db))
    assert code == Exit.TAMPERED
    assert f"jobs/{partition}  offset {start}  CHANGED" in out


def test_export_before_the_cut_is_refused_naming_the_earliest(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "j.db"
    cut, retained = asyncio.run(cut_and_stop(db))
    earliest = iso_ms(retained.time_ms)
    capsys.readouterr()
    code, out, err = run(capsys, "export", "--db", str(db), "--from", "0")
    assert code == Exit.USAGE and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith("error: --from: before what the log keeps") and \
        str(earliest) in line
    code, out, err = run(capsys, "export", "--db", str(db), "--from", iso_ms(cut.recorded) or "")
    assert code == Exit.OK and cut.new in out


@pytest.mark.parametrize("args", [["--log-retention", "soon"],
                                  ["--log-retention", "90d", "--broker", "kafka://127.0.0.1:1"]])
def test_a_bad_log_retention_is_one_line_naming_the_flag(
        args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(["serve", *args])
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    _, err = capsys.readouterr()
    assert code == Exit.USAGE
    (line,) = [x for x in err.strip().splitlines() if "--log-retention" in x and "error" in x]
    assert "Traceback" not in err


async def test_an_anchor_from_before_the_cut_is_checked_from_the_cut_where_it_reaches(
        node: EmbeddedNode, capsys: pytest.CaptureFixture[str]) -> None:
    """A partition whose anchored records were all cut is ANCHOR (the log cannot show them
    any more); one whose anchored records reach the cut is checked from the link there."""
    db = node.config.db
    async with api_client(node) as client:
        for i in range(8):  # in most partitions, before records the cut removes
            await submit(client, task_type="echo", payload=f"first {i}")
        await settle(node)
        assert await asyncio.to_thread(main, ["anchor", "--db", str(db)]) == Exit.OK
        anchor = capsys.readouterr().out.strip()
        await cut_log(node, client)
    code = await asyncio.to_thread(main, ["verify", "--db", str(db), "--anchor", anchor])
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if "/" in line.split()[0]}
    gone = reached = 0
    for (topic, partition), head in parse_anchor(anchor).items():
        start = node.retained.starts.get(topic, {}).get(partition, 0)
        line = lines[f"{topic}/{partition}"]
        if 0 < head.end < start:
            gone += 1
            assert f"offset {start}  ANCHOR: the anchor holds {head.end} records, all before" \
                in line
        else:
            reached += head.end == start > 0
            assert "  OK  " in line or line.endswith("no records  OK"), line
    assert reached  # workers/0: its first record is anchored, the cut is right after it
    assert code == (Exit.TAMPERED if gone else Exit.OK), out


async def test_a_start_without_the_base_its_read_models_need_is_refused(
        tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    await cut_and_stop(db)
    for path in (base_path(views_path(db)), views_path(db)):
        path.unlink()
    node = EmbeddedNode(config(db), handlers)
    with pytest.raises(DataFileError, match="base .* is missing: restore it"):
        await node.start()


async def test_without_the_base_an_as_of_on_a_cut_log_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    cut, _ = await cut_and_stop(db)
    base_path(views_path(db)).unlink()  # the read models are whole: the start goes on
    node = EmbeddedNode(config(db, log_retention=None), handlers)
    await node.start()
    try:
        async with api_client(node) as client:
            refused = await client.get("/api/v1/stats", params={"as_of": iso_ms(cut.recorded)})
            assert_error(refused, 400, "AS_OF_BEFORE_RETAINED", "as_of")
            assert "base" in refused.json()["error"]
            assert (await client.get("/api/v1/stats")).status_code == 200
    finally:
        await node.stop()


def test_a_cut_log_is_not_migrated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "j.db"
    asyncio.run(cut_and_stop(db))
    capsys.readouterr()
    code, out, err = run(capsys, "migrate", "--db", str(db), "--to", "kafka://127.0.0.1:1")
    assert code == Exit.USAGE and out == ""
    (line,) = err.strip().splitlines()
    assert "--db" in line and "cut by --log-retention" in line


def test_unfinished_jobs_run_after_a_cut_a_sigkill_and_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    first = ServerProcess(db, "--demo", "--lease-seconds", "2")
    first.wait_healthy()
    done = [first.http.post("/api/v1/tasks", json={"task_type": "echo", "payload": i}
                            ).json()["task_id"] for i in range(5)]
    poll(lambda: all(first.finished(t) for t in done), 20, what="the first tasks finished")
    later = first.http.post("/api/v1/tasks", json={"task_type": "echo", "payload": "later",
                                                  "delay_seconds": 6}).json()["task_id"]
    running = first.http.post("/api/v1/tasks", json={"task_type": "sleep", "payload": 2,
                                                    "max_retries": 3}).json()["task_id"]
    poll(lambda: (first.task(running) or {}).get("status") == "in_progress", 20,
         what="the sleep task running")
    first.kill()
    time.sleep(1.2)  # every record is now older than the age below
    cutting = ServerProcess(db, "--demo", "--lease-seconds", "2", "--log-retention", "1s",
                            "--no-workers")
    cutting.wait_healthy()
    poll(lambda: log_rows(db).get((JOBS, 0), [(0,)])[0][0] > 0 or any(
        rows[0][0] > 0 for rows in log_rows(db).values()), 20, what="a cut of the log")
    cutting.kill()
    for suffix in ("", "-wal", "-shm"):  # and the read models start from the base
        Path(f"{views_path(db)}{suffix}").unlink(missing_ok=True)
    last = ServerProcess(db, "--demo", "--lease-seconds", "2")
    try:
        last.wait_healthy()
        assert poll(lambda: last.finished(later), 30, what="the delayed task")["result"] == \
            "later"
        assert poll(lambda: last.finished(running), 30, what="the running task")["status"] \
            == "completed"
        assert last.task(done[0]) is not None and last.finished(done[0])
    finally:
        last.stop()
