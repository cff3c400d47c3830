"""The read-model file on disk: written without fsyncs, and thrown away after an OS crash.

The read models are a cache of the log, so their file runs with synchronous=OFF: a
commit or a checkpoint hands its pages to the OS and goes on. Killing the process loses
nothing (the OS still has every page); only an OS crash or a power cut can leave the
file damaged. Its fsyncs used to cost more than their own time: a checkpoint of the read
models flushes megabytes, and the log's commits on the same disk waited behind it (the
tail of enqueue->start, docs/performance.md, "Figures behind the code").

So an open store marks the file with the boot it was opened in (user_version, written
durably before anything else), and a clean close makes every page durable before it
clears the mark. A file still marked by an earlier boot was open when the OS went down:
it is removed, and the projections rebuild it from the log.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import zlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import psutil

log = logging.getLogger(__name__)
CLOSED = 0  # user_version of a file no store has open
# Tables that are not read models: one missing is made empty (files from before log_source)
METADATA = frozenset({"log_source"})
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@lru_cache(maxsize=1)
def boot_mark() -> int:
    """This boot of the machine, as a positive 31-bit number (never CLOSED)."""
    boot = _BOOT_ID.read_text().strip() if _BOOT_ID.exists() else str(int(psutil.boot_time()))
    return zlib.crc32(boot.encode()) % (2**31 - 1) + 1


def discard_if_crashed(path: Path) -> bool:
    """Remove the read-model file at path if an OS crash may have damaged it: it was open
    in an earlier boot, or SQLite finds it unreadable. True if it was removed."""
    if not path.exists():
        return False
    try:
        conn = sqlite3.connect(path)
        try:
            (mark,) = conn.execute("PRAGMA user_version").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        why = f"it cannot be read ({exc})"
    else:
        if mark in (CLOSED, boot_mark()):
            return False  # closed cleanly, or open in this boot (a process killed: no harm)
        why = "it was open when the machine went down"
    log.warning("rebuilding the read models from the log: %s is removed, since %s", path, why)
    remove_db(path)
    return True


@dataclass(frozen=True)
class OnDisk:
    """What a read-model file says about the log it was folded from, read before a store
    opens it (services/node/read_model_check.py judges it against the log)."""

    source: tuple[str, int] | None  # the log's (log_id, epoch); None: not recorded
    checkpoints: dict[str, dict[int, int]]  # model -> partition -> next offset
    # Read-model tables of schema.sql the file lacks or defines otherwise: another version
    stale_tables: tuple[str, ...] = ()

    @property
    def applied(self) -> int:
        """Events applied in all: the log held at least this many."""
        return sum(offset for parts in self.checkpoints.values() for offset in parts.values())


def read_on_disk(path: Path) -> OnDisk | None:
    """The source and checkpoints of the read-model file at path; None if there is none."""
    if not path.exists():
        return None
    conn = sqlite3.connect(path)
    try:
        tables = {name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        checkpoints: dict[str, dict[int, int]] = {}
        if "checkpoints" in tables:
            for model, partition, offset in conn.execute("SELECT * FROM checkpoints"):
                checkpoints.setdefault(model, {})[partition] = offset
        row = None
        if "log_source" in tables:
            row = conn.execute("SELECT log_id, epoch FROM log_source").fetchone()
        shapes = table_shapes(conn)
        stale = tuple(sorted(name for name, sql in schema_shapes().items()
                             if shapes.get(name, sql if name in METADATA else None) != sql))
        return OnDisk(None if row is None else (row[0], row[1]), checkpoints, stale)
    finally:
        conn.close()


def table_shapes(conn: sqlite3.Connection) -> dict[str, str]:
    """Each table's CREATE statement, as SQLite keeps it."""
    return dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))


@lru_cache(maxsize=1)
def schema_shapes() -> dict[str, str]:
    """The tables this version's schema.sql creates, as SQLite keeps them."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(
            resources.files("jobledger.projections").joinpath("schema.sql").read_text())
        return table_shapes(conn)
    finally:
        conn.close()


def fsync_files(path: Path) -> None:
    """Make every page written to the file and its WAL so far durable."""
    for name in (path, Path(f"{path}-wal")):
        try:
            fd = os.open(name, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_db(path: Path) -> None:
    path.unlink(missing_ok=True)
    remove_sidecars(path)


def remove_sidecars(path: Path) -> None:
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
