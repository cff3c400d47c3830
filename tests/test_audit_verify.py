"""`jobledger verify` and `jobledger anchor` (issue 22, section 2): an untouched log is OK
with each partition's head; a flipped byte, a deleted record, two swapped records, a log cut
short and a record this build cannot read are each named by partition and offset; an anchor
is extended by later appends and broken by an edit before it."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

import pytest

from jobledger.schemas import JobDue, encode
from jobledger.services.cli.common import Exit
from jobledger.services.cli.main import main
from jobledger.services.log.chain import genesis, link
from jobledger.services.log.protocol import Entry, LogError
from jobledger.services.log.sqlite import SQLiteLogBackend
from tests.support.audit_history import SERVE_PARTITIONS, busiest, write_history
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


def edit(db: Path, *statements: tuple[str, tuple[object, ...]]) -> None:
    """Change the file behind the log's back, as someone with the file would."""
    conn = sqlite3.connect(db)
    with conn:
        for sql, params in statements:
            conn.execute(sql, params)
    conn.close()


def test_an_untouched_log_is_ok_with_every_partitions_head(
        db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "verify", "--db", str(db))
    assert code == Exit.OK
    topic, part, count = busiest(db)
    conn = sqlite3.connect(db)
    (head,) = conn.execute("SELECT chain FROM records WHERE topic = ? AND partition = ? AND "
                           "offset = ?", (topic, part, count - 1)).fetchone()
    conn.close()
    assert f"{topic}/{part}  offsets 0..{count - 1}  OK  head {head.hex()}" in out
    assert len(re.findall(r"  OK", out)) == sum(SERVE_PARTITIONS.values())
    assert out.splitlines()[-1].startswith("OK: ")


def test_the_chain_is_sha256_over_link_offset_key_and_bytes(db: Path) -> None:
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT offset, key, value, chain FROM records WHERE topic = 'jobs' AND "
                        "partition = 0 ORDER BY offset").fetchall()
    conn.close()
    prev = genesis("jobs", 0)
    for offset, key, value, chain in rows:
        prev = link(prev, offset, key, value)
        assert chain == prev


def test_a_flipped_byte_is_a_changed_record(db: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    topic, part, _ = busiest(db)
    edit(db, ("UPDATE records SET value = CAST(replace(CAST(value AS TEXT), 'gold', 'golD')"
              " AS BLOB) WHERE topic = ? AND partition = ? AND offset = 3", (topic, part)))
    code, out, _ = run(capsys, "verify", "--db", str(db))
    assert code == Exit.TAMPERED
    assert f"{topic}/{part}  offset 3  CHANGED" in out


@pytest.mark.parametrize("column, new_value", [
    ("value", "replace(CAST(value AS TEXT), 'gold', 'golD')"),  # a value edited as text
    ("value", "42"),
    ("key", "CAST(key AS BLOB)"),
    ("chain", "hex(chain)"),
], ids=["value-text", "value-int", "key-blob", "link-text"])
def test_a_field_retyped_by_an_edit_is_a_changed_record(
        db: Path, capsys: pytest.CaptureFixture[str], column: str, new_value: str) -> None:
    """SQLite keeps whatever type a hand edit writes: verify names the record, no traceback."""
    topic, part, _ = busiest(db)
    edit(db, (f"UPDATE records SET {column} = {new_value} WHERE topic = ? AND partition = ?"
              " AND offset = 3", (topic, part)))
    code, out, _ = run(capsys, "verify", "--db", str(db))
    assert code == Exit.TAMPERED
    assert f"{topic}/{part}  offset 3  CHANGED" in out


def test_a_deleted_record_is_missing(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    topic, part, _ = busiest(db)
    edit(db, ("DELETE FROM records WHERE topic = ? AND partition = ? AND offset = 4",
              (topic, part)))
    code, out, _ = run(capsys, "verify", "--db", str(db))
    assert code == Exit.TAMPERED
    assert f"{topic}/{part}  offset 4  MISSING: no record at offsets 4..4" in out


@pytest.mark.parametrize("with_links", [True, False], ids=["rows", "values"])
def test_two_swapped_records_are_reordered(db: Path, capsys: pytest.CaptureFixture[str],
                                           with_links: bool) -> None:
    topic, part, _ = busiest(db)
    where = "topic = ? AND partition = ? AND offset = ?"
    if with_links:  # the rows change places, links and all
        edit(db, (f"UPDATE records SET offset = -1 WHERE {where}", (topic, part, 2)),
             (f"UPDATE records SET offset = 2 WHERE {where}", (topic, part, 6)),
             (f"UPDATE records SET offset = 6 WHERE {where}", (topic, part, -1)))
    else:  # only their keys and bytes do
        conn = sqlite3.connect(db)
        (k2, v2), (k6, v6) = (conn.execute(f"SELECT key, value FROM records WHERE {where}",
                                           (topic, part, o)).fetchone() for o in (2, 6))
        conn.close()
        edit(db, (f"UPDATE records SET key = ?, value = ? WHERE {where}", (k6, v6, topic, part, 2)),
             (f"UPDATE records SET key = ?, value = ? WHERE {where}", (k2, v2, topic, part, 6)))
    code, out, _ = run(capsys, "verify", "--db", str(db))
    assert code == Exit.TAMPERED
    assert f"{topic}/{part}  offset 2  REORDERED: the record that belongs here is at offset 6" \
        in out


def test_a_log_cut_short_is_missing_its_tail(db: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    topic, part, count = busiest(db)
    edit(db, ("DELETE FROM records WHERE topic = ? AND partition = ? AND offset >= ?",
              (topic, part, count - 3)))
    code, out, _ = run(capsys, "verify", "--db", str(db))
    assert code == Exit.TAMPERED
    assert (f"{topic}/{part}  offset {count - 3}  MISSING: no record at offsets "
            f"{count - 3}..{count - 1} (the log ends before the chain's recorded head") in out


def test_a_record_that_cannot_be_upcast_is_named(db: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bad = (b'{"id":"e","key":"w-9","time":"2024-05-01T09:00:00Z","actor":{"kind":"worker"},'
           b'"event":{"type":"WorkerHeartbeat","worker_id":"w-9","cpu_percent":1.0,'
           b'"memory_bytes":"lots","current_jobs":[],"v":1}}')

    async def append() -> None:
        backend = await SQLiteLogBackend.open(db, {})
        await backend.topic("workers").append([Entry("w-9", bad)])
        await backend.close()

    asyncio.run(append())
    code, out, _ = run(capsys, "verify", "--db", str(db))
    assert code == Exit.TAMPERED
    assert re.search(r"workers/0  offset \d+  BAD UPCAST: the record is intact but cannot be "
                     r"read: cannot upcast WorkerHeartbeat v1", out), out


def test_a_range_is_checked_from_the_link_before_it(db: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    topic, part, count = busiest(db)
    code, out, _ = run(capsys, "verify", "--db", str(db), "--from", "2", "--to", "5")
    assert code == Exit.OK
    assert f"{topic}/{part}  offsets 2..4  OK" in out
    edit(db, ("DELETE FROM records WHERE topic = ? AND partition = ? AND offset = 6",
              (topic, part)))
    assert run(capsys, "verify", "--db", str(db), "--to", "5")[0] == Exit.OK


def test_an_anchor_is_extended_by_appends_and_broken_by_an_edit(
        db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, anchor, _ = run(capsys, "anchor", "--db", str(db))
    assert code == Exit.OK and anchor.count("\n") == 1
    asyncio.run(write_history(db))  # the same records again, after the anchor
    code, out, _ = run(capsys, "verify", "--db", str(db), "--anchor", anchor)
    assert code == Exit.OK and "extends the anchor" in out

    # Someone rewrites a record and every link after it, heads included: the chain holds,
    # but no longer reaches the anchor.
    topic, part, _ = busiest(db)
    asyncio.run(_rewrite(db, topic, part, 1))
    assert run(capsys, "verify", "--db", str(db))[0] == Exit.OK
    code, out, _ = run(capsys, "verify", "--db", str(db), "--anchor", anchor)
    assert code == Exit.TAMPERED
    assert re.search(rf"{topic}/{part}  offset \d+  ANCHOR: ", out), out


async def _rewrite(db: Path, topic: str, part: int, offset: int) -> None:
    """Change a record and recompute every link after it and the recorded head."""
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT offset, key, value FROM records WHERE topic = ? AND "
                        "partition = ? ORDER BY offset", (topic, part)).fetchall()
    prev = genesis(topic, part)
    with conn:
        for off, key, value in rows:
            if off == offset:
                value = value.replace(b"gold", b"GOLD")
            prev = link(prev, off, key, value)
            conn.execute("UPDATE records SET value = ?, chain = ? WHERE topic = ? AND "
                         "partition = ? AND offset = ?", (value, prev, topic, part, off))
        conn.execute("UPDATE chain_heads SET link = ? WHERE topic = ? AND partition = ?",
                     (prev, topic, part))
    conn.close()


def test_a_bad_anchor_line_is_one_clear_error(db: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    _, anchor, _ = run(capsys, "anchor", "--db", str(db))
    tampered = anchor.replace("jobs/0=", "jobs/0=1", 1)
    code, _, err = run(capsys, "verify", "--db", str(db), "--anchor", tampered)
    assert code == Exit.USAGE
    assert err == "error: --anchor: the line's checksum does not match: it was changed or cut " \
                  "when copied\n"


def test_anchor_refuses_a_broken_log(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    topic, part, _ = busiest(db)
    edit(db, ("DELETE FROM records WHERE topic = ? AND partition = ? AND offset = 0",
              (topic, part)))
    code, out, err = run(capsys, "anchor", "--db", str(db))
    assert code == Exit.TAMPERED and out == ""
    assert f"{topic}/{part}  offset 0  MISSING" in err


async def test_the_chain_holds_under_group_commit(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Hundreds of concurrent appends share commits; each commit's links follow the last."""
    backend = await SQLiteLogBackend.open(tmp_path / "log.db", SERVE_PARTITIONS)
    jobs = backend.topic("jobs")
    await asyncio.gather(*(jobs.append([Entry(f"job-{i}", encode(envelope(JobDue(f"job-{i}"))))]
                                       * (1 + i % 3)) for i in range(300)))
    await backend.close()
    code, out, _ = await asyncio.to_thread(run, capsys, "verify", "--db",
                                           str(tmp_path / "log.db"))
    assert code == Exit.OK, out
    assert "OK: 600 records" in out


def test_a_log_from_before_the_chain_is_upgraded(db: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    conn = sqlite3.connect(db)  # make it look as an old version wrote it
    with conn:
        conn.execute("ALTER TABLE records DROP COLUMN chain")
        conn.execute("DROP TABLE chain_heads")
        conn.execute("DELETE FROM meta WHERE key = 'chained'")
    conn.close()
    code, _, err = run(capsys, "verify", "--db", str(db))
    assert code == Exit.FAILED
    assert "was written before the hash chain: chain it with `jobledger upgrade-chain" in err
    assert run(capsys, "upgrade-chain", "--db", str(db))[0] == Exit.OK
    code, out, _ = run(capsys, "verify", "--db", str(db))
    assert code == Exit.OK
    assert "note: records written before the chain were chained on " in out
    assert "their links prove them unchanged since then, not before" in out


async def test_a_failed_commit_gives_its_links_back(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A commit that fails hands back its offsets and its links: the next one chains from
    the last record committed, not from the records that never were."""
    path = tmp_path / "log.db"
    backend = await SQLiteLogBackend.open(path, SERVE_PARTITIONS)
    jobs = backend.topic("jobs")
    record = encode(envelope(JobDue("job")))
    try:
        await jobs.append([Entry("job", record)])
        edit(path, ("CREATE TRIGGER poison BEFORE INSERT ON records WHEN NEW.key = 'poison' "
                    "BEGIN SELECT RAISE(ABORT, 'refused'); END", ()))
        with pytest.raises(LogError, match="refused"):
            await jobs.append([Entry("job", record), Entry("poison", record, 0)])
        edit(path, ("DROP TRIGGER poison", ()))
        await jobs.append([Entry("job", record)] * 2)
    finally:
        await backend.close()
    code, out, _ = await asyncio.to_thread(run, capsys, "verify", "--db", str(path))
    assert code == Exit.OK, out
    assert "OK: 3 records" in out
