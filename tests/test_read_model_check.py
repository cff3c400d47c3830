"""Read models are served only over the log they were folded from (issue 18, 1;
services/node/read_model_check.py): a log lost, emptied or restored from an older copy
beside read models that say what it held is refused at start, read models of another log
are rebuilt with a warning, and read models from before identities are adopted when they
fit the log. Real log files, real nodes; the files are damaged as an operator would."""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from jobledger.projections.store_file import read_on_disk, remove_db
from jobledger.schemas import JobStatus
from jobledger.services.cli.common import Exit
from jobledger.services.handlers.demo import demo
from jobledger.services.log.protocol import DataFileError
from jobledger.services.log.sqlite import SQLiteLogBackend
from jobledger.services.node.embedded import EmbeddedNode, views_path
from jobledger.services.replay.rebuild import rebuild
from tests.support.harness import NodeFactory, enqueue, settle, wait_until
from tests.support.kafka_broker import TansuBroker
from tests.support.kafka_harness import kafka_config, node_config, started
from tests.support.procs import free_port

JOBLEDGER = Path(sys.executable).with_name("jobledger")


async def fill(make_node: NodeFactory, tasks: int) -> list[str]:
    """Start a node over the factory's log, run `tasks` echo jobs to the end, stop it."""
    node = await make_node(demo)
    ids = [await enqueue(node, "echo", n) for n in range(tasks)]
    for job_id in ids:
        await wait_until(node, job_id, JobStatus.COMPLETED)
    await make_node.stop(node)
    return ids


def remove_log(db: Path) -> None:
    for name in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        name.unlink(missing_ok=True)


def copy_log(source: Path, to: Path) -> None:
    """Copy a stopped log file with its WAL, over whatever is at `to`."""
    remove_log(to)
    shutil.copy(source, to)
    if Path(f"{source}-wal").exists():
        shutil.copy(f"{source}-wal", f"{to}-wal")


async def job_count(node: EmbeddedNode) -> int:
    await settle(node)
    rows = await node.queries.db.execute_fetchall("SELECT COUNT(*) FROM jobs")
    return int(rows[0][0])


async def identity_of(db: Path) -> tuple[str, int]:
    backend = await SQLiteLogBackend.open(db, {}, read_only=True)
    try:
        identity = await backend.identity()
    finally:
        await backend.close()
    assert identity is not None
    return identity.log_id, identity.epoch


async def test_a_log_gets_an_identity_at_creation_and_keeps_it(make_node: NodeFactory) -> None:
    await fill(make_node, 1)
    first = await identity_of(make_node.db)
    node = await make_node(demo)
    await make_node.stop(node)
    assert await identity_of(make_node.db) == first
    on_disk = read_on_disk(views_path(make_node.db))
    assert on_disk is not None and on_disk.source == first  # recorded by the read models
    replayed = make_node.db.with_name("replayed.db")
    await rebuild(make_node.db, replayed, show_progress=False)
    assert (on_replay := read_on_disk(replayed)) is not None and on_replay.source == first


async def test_a_deleted_log_beside_read_models_is_refused_and_not_made_anew(
    make_node: NodeFactory,
) -> None:
    await fill(make_node, 30)
    remove_log(make_node.db)
    with pytest.raises(DataFileError, match=r"the log \S+j.db is missing, but the read models "
                       r"\S+j.views.db have applied [\d,]+ events of it: restore the log from "
                       r"a backup .*or delete \S+j.views.db"):
        await make_node(demo)
    assert not make_node.db.exists()


async def test_a_log_emptied_to_0_bytes_is_refused_and_left_as_it_is(
    make_node: NodeFactory,
) -> None:
    await fill(make_node, 30)
    remove_log(make_node.db)
    make_node.db.write_bytes(b"")
    with pytest.raises(DataFileError, match=r"j.db is an empty file \(0 bytes\), which a "
                       r"jobledger log never is: .* Restore it from a backup, or delete it "
                       r"and \S+j.views.db to start a new, empty log"):
        await make_node(demo)
    assert make_node.db.stat().st_size == 0


async def test_a_log_of_0_bytes_without_read_models_is_refused_too(
    make_node: NodeFactory,
) -> None:
    make_node.db.write_bytes(b"")
    with pytest.raises(DataFileError, match=r"is an empty file \(0 bytes\).* delete it to"):
        await make_node(demo)


async def test_a_log_holding_no_events_beside_read_models_is_refused(
    make_node: NodeFactory,
) -> None:
    await fill(make_node, 3)
    conn = sqlite3.connect(make_node.db, isolation_level=None)
    conn.execute("DELETE FROM records")
    conn.close()
    with pytest.raises(DataFileError, match="holds no events, but the read models"):
        await make_node(demo)


async def test_read_models_ahead_of_their_own_log_are_refused(make_node: NodeFactory) -> None:
    """An older copy of the log restored over it: the read models applied events it lost."""
    await fill(make_node, 3)
    backup = make_node.db.with_name("backup.db")
    copy_log(make_node.db, backup)
    await fill(make_node, 5)
    copy_log(backup, make_node.db)
    with pytest.raises(DataFileError, match=r"j.db ends before what the read models \S+ "
                       r"applied \((jobs|logs|workers) partition \d: [\d,]+ events applied, "
                       r"[\d,]+ in the log\): it lost events"):
        await make_node(demo)


async def test_read_models_of_another_log_are_rebuilt_from_this_one_with_a_warning(
    make_node: NodeFactory, caplog: pytest.LogCaptureFixture,
) -> None:
    await fill(make_node, 30)
    views = views_path(make_node.db)
    shutil.copy(views, views.with_name("other.views.db"))
    remove_log(make_node.db)
    remove_db(views)
    await fill(make_node, 2)  # a new log, with an identity of its own
    shutil.copy(views.with_name("other.views.db"), views)
    with caplog.at_level(logging.WARNING, "jobledger.node"):
        node = await make_node(demo)
    assert await job_count(node) == 2
    [warning] = warnings(caplog)
    assert "rebuilding the read models" in warning.getMessage()
    assert "they were folded from another log (log id " in warning.getMessage()


def warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name == "jobledger.node" and r.levelno >= logging.WARNING]


def drop_source(views: Path) -> None:
    """Leave the read models as jobledger wrote them before logs had an identity."""
    conn = sqlite3.connect(views, isolation_level=None)
    conn.execute("DROP TABLE log_source")
    conn.close()


async def test_read_models_from_before_identities_within_the_log_are_adopted(
    make_node: NodeFactory, caplog: pytest.LogCaptureFixture,
) -> None:
    await fill(make_node, 3)
    drop_source(views_path(make_node.db))
    with caplog.at_level(logging.WARNING, "jobledger.node"):
        node = await make_node(demo)
    assert await job_count(node) == 3
    assert not warnings(caplog)
    on_disk = read_on_disk(views_path(make_node.db))
    assert on_disk is not None and on_disk.source == await identity_of(make_node.db)


async def test_read_models_from_before_identities_beyond_the_log_are_rebuilt(
    make_node: NodeFactory, caplog: pytest.LogCaptureFixture,
) -> None:
    await fill(make_node, 3)
    backup = make_node.db.with_name("backup.db")
    copy_log(make_node.db, backup)
    await fill(make_node, 5)
    copy_log(backup, make_node.db)
    drop_source(views_path(make_node.db))
    with caplog.at_level(logging.WARNING, "jobledger.node"):
        node = await make_node(demo)
    assert await job_count(node) == 3
    assert "record no log id" in caplog.text


async def test_an_api_nodes_read_models_are_checked_against_its_topics(
    tmp_path: Path, kafka_broker: TansuBroker, caplog: pytest.LogCaptureFixture,
) -> None:
    """Kafka mode: the topics' identity is the cluster id and the topic prefix; the
    checkpoints are checked against the topics' ends as in the SQLite mode."""
    config = kafka_config(kafka_broker)
    views = tmp_path / "api.views.db"
    node = await started(node_config(config, views), demo)
    await enqueue(node, "echo", 1)  # type: ignore[arg-type]  # any node with commands
    assert await node.caught_up(20)
    await node.stop()
    on_disk = read_on_disk(views)
    assert on_disk is not None and on_disk.source is not None
    assert on_disk.source == (f"kafka:{kafka_broker.cluster_id}/{config.topic_prefix}", 0)

    conn = sqlite3.connect(views, isolation_level=None)  # as if the topics had lost records
    conn.execute("UPDATE checkpoints SET next_offset = next_offset + 1000")
    conn.close()
    with pytest.raises(DataFileError, match=rf"the topics {config.topic_prefix}\* at "
                       rf"{kafka_broker.bootstrap} ends before what the read models"):
        await started(node_config(config, views), demo)

    other = kafka_config(kafka_broker)  # another prefix: other topics, another log
    with caplog.at_level(logging.WARNING, "jobledger.node"):
        node = await started(node_config(other, views), demo)
    try:
        assert "they were folded from another log" in caplog.text
        rows = await node.queries.db.execute_fetchall("SELECT COUNT(*) FROM jobs")
        assert rows[0][0] == 0
    finally:
        await node.stop()


@pytest.mark.slow
def test_serve_over_a_deleted_log_is_one_line_and_exit_5(tmp_path: Path) -> None:
    """The issue's case: the log deleted, its read models kept. Before, the server was
    healthy and served the tasks of a log that no longer held them."""
    asyncio.run(fill(NodeFactory(tmp_path), 30))
    remove_log(tmp_path / "j.db")
    result = subprocess.run([str(JOBLEDGER), "serve", "--db", "j.db", "--demo", "--port",
                             str(free_port())], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == Exit.DATA, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: the log j.db is missing, but the read models j.views.db have applied "), lines
    assert not (tmp_path / "j.db").exists()


async def test_read_models_with_older_columns_are_rebuilt_with_a_warning(
    make_node: NodeFactory, caplog: pytest.LogCaptureFixture,
) -> None:
    """Read models written before causal ids (jobs without their columns) are rebuilt from
    the log, which fills the new columns."""
    await fill(make_node, 3)
    views = views_path(make_node.db)
    conn = sqlite3.connect(views, isolation_level=None)
    for column in ("correlation_id", "cause_id"):
        conn.execute(f"ALTER TABLE jobs DROP COLUMN {column}")
    conn.close()
    with caplog.at_level(logging.WARNING, "jobledger.node"):
        node = await make_node(demo)
    assert await job_count(node) == 3
    assert "another jobledger version wrote them (its tables jobs differ" in caplog.text
    rows = await node.queries.db.execute_fetchall("SELECT correlation_id FROM jobs")
    assert all(row[0] for row in rows)


async def test_read_models_another_version_wrote_are_rebuilt(
    make_node: NodeFactory, caplog: pytest.LogCaptureFixture,
) -> None:
    """A table defined otherwise (here workers before its partitions column, as an older
    jobledger wrote it) would fail every write of that model: rebuilt, with a warning."""
    await fill(make_node, 3)
    with sqlite3.connect(views_path(make_node.db)) as conn:
        conn.execute("ALTER TABLE workers DROP COLUMN partitions")
    assert read_on_disk(views_path(make_node.db)).stale_tables == ("workers",)  # type: ignore[union-attr]
    with caplog.at_level(logging.WARNING, "jobledger.node"):
        node = await make_node(demo)
    assert await job_count(node) == 3
    assert "another jobledger version wrote them (its tables workers differ" in caplog.text
    assert len(await node.queries.workers()) == 2  # the first node's, stopped, and this one's
