"""`jobledger export` and `jobledger import` (issue 22, section 3): export -> import ->
replay gives the checksums of the original; a broken file is refused naming its line, and
nothing is written; export filters by topic, task and range, and reads a live log."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jobledger.schemas import JobDue, encode
from jobledger.services.cli.common import Exit
from jobledger.services.cli.main import main
from jobledger.services.log.protocol import Entry
from jobledger.services.log.sqlite import SQLiteLogBackend
from jobledger.services.replay.rebuild import replay
from tests.support.audit_history import write_history
from tests.support.builders import envelope


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "log.db"
    asyncio.run(write_history(path))
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def export(capsys: pytest.CaptureFixture[str], db: Path, target: Path, *flags: str) -> int:
    code, out, err = run(capsys, "export", "--db", str(db), *flags)
    assert code == Exit.OK, err
    target.write_text(out)
    return len(out.splitlines())


def test_export_import_replay_gives_the_same_checksums(
        db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = export(capsys, db, tmp_path / "events.jsonl")
    code, out, _ = run(capsys, "import", str(tmp_path / "events.jsonl"),
                       "--db", str(tmp_path / "copy.db"))
    assert code == Exit.OK
    assert out == f"imported {lines} records into {tmp_path / 'copy.db'}; the chain holds\n"
    original = asyncio.run(replay(db, tmp_path / "a.replay.db", show_progress=False))
    copied = asyncio.run(replay(tmp_path / "copy.db", tmp_path / "b.replay.db", False))
    assert copied == original
    # The same chain: the copy's anchor is the original's.
    anchors = [run(capsys, "anchor", "--db", str(path))[1].split(" ", 2)[2]
               for path in (db, tmp_path / "copy.db")]
    assert anchors[0].rsplit(" sum=")[0] == anchors[1].rsplit(" sum=")[0]


def test_a_line_is_an_envelope_with_its_place_and_link(
        db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export(capsys, db, tmp_path / "events.jsonl")
    first = json.loads((tmp_path / "events.jsonl").read_text().splitlines()[0])
    assert list(first) == ["topic", "partition", "partitions", "offset", "key", "timestamp_ms",
                           "chain", "envelope"]
    assert first["envelope"]["key"] == first["key"] and len(first["chain"]) == 64


@pytest.mark.parametrize(("damage", "line", "message"), [
    (lambda ls: ls[:4] + [ls[4].replace("gold", "GOLD", 1)] + ls[5:], 5,
     "the record does not give its chain link: it was changed"),
    (lambda ls: ls[:4] + ls[5:], 5, "expected offset 4: missing records before it"),
    (lambda ls: ls[:4] + [ls[5], ls[4]] + ls[6:], 5, "expected offset 4: missing records"),
    (lambda ls: ls[:4] + ["{not json"] + ls[4:], 5, "not an export line"),
], ids=["changed", "deleted", "swapped", "garbage"])
def test_a_broken_file_is_refused_naming_the_line(
        db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: object,
        line: int, message: str) -> None:
    export(capsys, db, tmp_path / "events.jsonl", "--topic", "jobs")
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert lines[4].count("gold")
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(damage(lines)) + "\n")  # type: ignore[operator]
    code, out, err = run(capsys, "import", str(broken), "--db", str(tmp_path / "copy.db"))
    assert code == Exit.USAGE and out == ""
    assert err.startswith(f"error: {broken}, line {line}: ") and message in err, err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "copy.db").exists()


def test_import_refuses_a_log_that_exists(db: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    export(capsys, db, tmp_path / "events.jsonl")
    code, _, err = run(capsys, "import", str(tmp_path / "events.jsonl"), "--db", str(db))
    assert code == Exit.USAGE
    assert err == f"error: --db: {db} exists: import into a new log file\n"


def test_export_filters_by_task_topic_and_range(db: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    export(capsys, db, tmp_path / "task.jsonl", "--task", "gold-done")
    task = [json.loads(line) for line in (tmp_path / "task.jsonl").read_text().splitlines()]
    assert task and {line["key"] for line in task} == {"gold-done"}
    assert {line["topic"] for line in task} == {"jobs", "logs"}
    export(capsys, db, tmp_path / "workers.jsonl", "--topic", "workers", "--from", "1",
           "--to", "3")
    workers = [json.loads(line) for line in (tmp_path / "workers.jsonl").read_text().splitlines()]
    assert [(line["topic"], line["offset"]) for line in workers] == [("workers", 1),
                                                                      ("workers", 2)]
    code, _, err = run(capsys, "export", "--db", str(db), "--topic", "nope")
    assert code == Exit.USAGE and err.startswith("error: --topic: no topic 'nope' in ")
    with pytest.raises(SystemExit) as stopped:
        run(capsys, "export", "--db", str(db), "--from", "yesterday")
    assert stopped.value.code == Exit.USAGE
    assert "argument --from: 'yesterday' is neither an RFC 3339 time nor an offset" \
        in capsys.readouterr().err


async def test_export_reads_a_live_log(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A server holds the log open for writing and appends while it is exported."""
    backend = await SQLiteLogBackend.open(db, {})
    try:
        await backend.topic("jobs").append([Entry("late", encode(envelope(JobDue("late"))))])
        code, out, _ = await asyncio.to_thread(run, capsys, "export", "--db", str(db),
                                               "--task", "late")
        assert code == Exit.OK
        assert [json.loads(line)["key"] for line in out.splitlines()] == ["late"]
    finally:
        await backend.close()


async def test_export_by_time_takes_each_partitions_records_in_the_range(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "log.db"
    backend = await SQLiteLogBackend.open(db, {"jobs": 2})
    start = 1_790_000_000_000  # Unix ms
    try:
        for second in range(4):
            await backend.topic("jobs").append([
                Entry(f"job-{second}", encode(envelope(JobDue(f"job-{second}"))), part,
                      start + second * 1000) for part in (0, 1)])
    finally:
        await backend.close()
    frm, to = (datetime.fromtimestamp((start + ms) / 1000, UTC).isoformat()
               for ms in (1000, 3000))
    code, out, _ = await asyncio.to_thread(run, capsys, "export", "--db", str(db),
                                           "--from", frm, "--to", to)
    assert code == Exit.OK
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(line["partition"], line["offset"]) for line in lines] == [(0, 1), (0, 2), (1, 1),
                                                                      (1, 2)]
