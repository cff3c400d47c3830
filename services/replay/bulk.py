"""A replay's fast path for the jobs model of a SQLite log (services/replay/rebuild.py).

A replay starts from empty read models, so it need not write each batch's changes as the
live projector does (upserts of every changed job, stats rows updated batch by batch).
Here the jobs topic is folded with the same reducer (reduce_job) into the final state of
each job, which is written once. A job's events all carry its id as their key, so the
jobs can be split by key between worker processes, each on its own core, each folding
every partition for its range of keys. The workers write their rows into the one file in
turns (a lock file, held for the SQL of one chunk), so that nothing is copied afterwards;
the parent then writes the summed stats.

Memory: a finished job's row is written at the end of the chunk it finished in and its
state dropped; a later event of it (a requeue, a duplicate enqueue) reads it back from
the file, as the projector reads a job that is not in its cache. Unfinished jobs stay in
memory until the end of their partition, when they are written too.
"""

from __future__ import annotations

import fcntl
import gc
import json
import os
import pickle
import sqlite3
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from jobledger.projections.fold import run_of
from jobledger.projections.jobs import JobState, detached, reduce_job
from jobledger.projections.rows import job_from_row, job_row, run_row
from jobledger.projections.stats import StatsDelta, ended_run
from jobledger.projections.store import Transaction, sql_file
from jobledger.schemas import JOBS, Envelope
from jobledger.schemas.codec import Undecodable, UndecodableRecord, decode
from jobledger.schemas.jobs import QUEUE_EVENTS
from jobledger.schemas.lifecycle import TERMINAL
from jobledger.services.log.protocol import LogCorrupt, Record
from jobledger.services.log.sqlite import BulkReader
from jobledger.services.runtime.projector import split_misplaced

CHUNK = 50_000  # records read, folded and written at a time
DAMAGED_LOG = 5  # a worker's exit status when it found the log damaged (its error: the result)
# A worker's file is scratch, or the <out>.building file: a crash means replaying again,
# so no journal at all.
_PRAGMAS = ("PRAGMA journal_mode=OFF", "PRAGMA synchronous=OFF", "PRAGMA cache_size=-65536",
            "PRAGMA busy_timeout=60000")

@dataclass
class Folded:
    """What folding some partitions gave, beyond the rows in the worker's file."""

    stats: StatsDelta = field(default_factory=StatsDelta)
    queue_events: list[Envelope] = field(default_factory=list)  # in log order per partition
    positions: dict[int, int] = field(default_factory=dict)  # the checkpoint of each partition
    # Job events whose job id is outside the worker's range of keys: the record's key is
    # not its job id, so the job's events may be split between workers (see replay.py).
    strays: int = 0


def fold_partitions(
    log: Path, out: Path, partitions: Sequence[tuple[int, int]],
    keys: tuple[str, str | None] = ("", None), indexes: bool = False,
    on_chunk: Callable[[int], None] | None = None, chunk: int | None = None,
) -> Folded:
    """Fold the records keyed in the range keys (from, before; None: no end) of the jobs
    topic's partitions (partition, end offset) of the log file into the jobs, job_events,
    runs and quarantine tables of the read models at out (created if need be), which
    other workers may be filling with other keys at the same time (see _SharedFileWriter).
    indexes: then build the secondary indexes (a lone writer: building them in one pass
    is cheaper than keeping them up to date row by row)."""
    conn = sqlite3.connect(out, isolation_level=None)
    try:
        for pragma in _PRAGMAS:
            conn.execute(pragma)
        conn.executescript(sql_file("schema.sql"))
        folded, reader = Folded(), BulkReader(log, JOBS)
        writer = _SharedFileWriter(conn, Path(f"{out}.turn"))
        try:
            for partition, end in partitions:
                fold = _PartitionFold(writer, reader, partition, keys, folded)
                for rows in reader.rows(partition, end, keys, chunk or CHUNK):
                    fold.chunk(rows)
                    if on_chunk is not None:
                        on_chunk(len(rows))
                fold.finish()
                folded.positions[partition] = end
        finally:
            reader.close()
        if indexes:
            conn.executescript(sql_file("indexes.sql"))
        return folded
    finally:
        conn.close()


class _SharedFileWriter:
    """Writes to a file that several worker processes fill at once, each with its own keys.
    SQLite lets one connection write at a time and makes the others poll (sleeping up to
    100 ms between tries); a lock file held around each transaction hands the file over
    as soon as it is free. The job ids written are remembered in a Bloom filter, so that
    the jobs never written (most of a chunk's: new ones) are not looked for in the file."""

    def __init__(self, conn: sqlite3.Connection, lock: Path):
        self.conn = conn
        self.lock = lock
        self.written = bytearray(_FILTER_BITS // 8)

    def run(self, tx: Transaction, written: Iterable[str]) -> None:
        """Run tx as one transaction, in this worker's turn; written: the jobs rows' ids."""
        bits = self.written
        for job_id in written:
            h = hash(job_id)
            i, j = h & _FILTER_MASK, (h >> 32) & _FILTER_MASK
            bits[i >> 3] |= 1 << (i & 7)
            bits[j >> 3] |= 1 << (j & 7)
        with self._turn():
            self.conn.execute("BEGIN")
            for sql, params, many in tx.statements:
                (self.conn.executemany if many else self.conn.execute)(sql, params)
            self.conn.execute("COMMIT")

    def maybe_written(self, job_id: str) -> bool:
        h, bits = hash(job_id), self.written
        i, j = h & _FILTER_MASK, (h >> 32) & _FILTER_MASK
        return bool(bits[i >> 3] >> (i & 7) & 1 and bits[j >> 3] >> (j & 7) & 1)

    @contextmanager
    def _turn(self) -> Iterator[None]:
        with open(self.lock, "ab") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when closed
            yield


# 2 hash functions over 2**27 bits (16 MiB): one false positive in 150,000 new jobs after
# 170,000 written, one in 5,000 after a million, so most chunks need no query at all.
_FILTER_BITS = 1 << 27
_FILTER_MASK = _FILTER_BITS - 1


class _PartitionFold:
    def __init__(self, writer: _SharedFileWriter, reader: BulkReader, partition: int,
                 keys: tuple[str, str | None], folded: Folded):
        self.writer = writer
        self.reader = reader
        self.partition = partition
        self.keys = keys
        self.folded = folded
        self.jobs: dict[str, JobState] = {}  # the states in memory
        self.before: dict[str, JobState | None] = {}  # each one's state when it came in
        self.unwritten: dict[str, int] = {}  # unfinished job -> offset of its last change

    def chunk(self, rows: list[tuple[int, bytes]]) -> None:
        envs, bad = self._decode(rows)
        changed, runs, events = self._fold(envs)
        self._write(changed, runs, events, bad, _ids(envs))
        if self.keys != ("", None):
            self.folded.strays += _outside(events, *self.keys)

    def finish(self) -> None:
        """Write the jobs still unfinished at the end of the partition."""
        jobs, stats = self.jobs, self.folded.stats
        rows = []
        for job_id, offset in self.unwritten.items():
            stats.add_status(self.before[job_id], jobs[job_id])
            rows.append(job_row(jobs[job_id], offset))
        tx = Transaction()
        tx.rows("INSERT OR REPLACE INTO jobs", rows)
        self.writer.run(tx, self.unwritten)

    def _decode(self, rows: list[tuple[int, bytes]]) -> tuple[list[Envelope], list[Undecodable]]:
        """As the projector decodes records: one that cannot be decoded, or whose event
        belongs on another topic, is quarantined. Only those need the record's key."""
        partition = self.partition
        good, bad = [], []
        for offset, value in rows:
            try:
                good.append(decode(value, partition, offset))
            except UndecodableRecord as exc:
                key = self.reader.key(partition, offset)
                bad.append(Undecodable(partition, offset, key, value, str(exc)))
        # The values are only looked at when some event is on the wrong topic (whose
        # quarantine row takes the key from the event).
        records = (Record(partition, offset, 0, "", value) for offset, value in rows)
        good, misplaced = split_misplaced(good, JOBS, records)
        return good, bad + misplaced

    def _fold(self, envs: Iterable[Envelope]) -> tuple[
        dict[str, int], dict[tuple[str, int], JobState], list[tuple[str, int, int]]
    ]:
        """fold_jobs' bookkeeping for a replay from empty: the status stats are counted
        when a job is written (from its state when it came into memory to its last), and
        a run's row is built once per chunk from its latest state."""
        jobs, before, maybe_written = self.jobs, self.before, self.writer.maybe_written
        stats, queue_events, partition = self.folded.stats, self.folded.queue_events, self.partition
        get = jobs.get
        changed: dict[str, int] = {}  # job -> offset of its last change
        runs: dict[tuple[str, int], JobState] = {}
        events: list[tuple[str, int, int]] = []
        for env in envs:
            event = env.event
            if isinstance(event, QUEUE_EVENTS):
                queue_events.append(env)
                continue
            job_id = event.job_id  # type: ignore[union-attr]  # so has every other job event
            events.append((job_id, partition, env.offset))
            old = get(job_id)
            if old is None and maybe_written(job_id):
                old = self._read_back(job_id)
            new = reduce_job(old, env)
            if new is old or new is None:
                continue
            if old is None:
                before[job_id] = None
            jobs[job_id] = new
            changed[job_id] = env.offset
            if ended_run(old, new):
                stats.add_run_end(new)
            if old is None or old.status != new.status:
                stats.add_move(old, new)
            # A new attempt is a new run, and a run whose status changed has changed: the
            # fields of run_of need no comparing then (most events: picks, ends).
            if new.attempt and (old is None or old.attempt != new.attempt
                                or old.run_status != new.run_status or run_of(old) != run_of(new)):
                runs[(job_id, new.attempt)] = new
        return changed, runs, events

    def _read_back(self, job_id: str) -> JobState | None:
        """The state of a job not in memory that may have been written already (finished in
        an earlier chunk, or in an earlier partition), brought back into memory."""
        row = self.writer.conn.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        state = self.jobs[job_id] = self.before[job_id] = job_from_row(row)
        return state

    def _write(self, changed: dict[str, int], runs: dict[tuple[str, int], JobState],
               events: list[tuple[str, int, int]], bad: list[Undecodable],
               ids: list[tuple[str, int, int]]) -> None:
        """Write the jobs that finished in this chunk (and drop them from memory), the
        chunk's runs, audit trail and quarantined records."""
        jobs, before, unwritten = self.jobs, self.before, self.unwritten
        stats = self.folded.stats
        rows, written = [], []
        for job_id, offset in changed.items():
            state = jobs[job_id]
            if state.status in TERMINAL:
                rows.append(job_row(state, offset))
                written.append(job_id)
                stats.add_status(before.pop(job_id), state)
                del jobs[job_id]
                unwritten.pop(job_id, None)
            else:
                unwritten[job_id] = offset
                jobs[job_id] = detached(state)  # kept across chunks: not a view of its record
        tx = Transaction()
        # OR REPLACE: a finished job read back for a later event is written again, and a
        # run's row once per chunk it changed in.
        tx.rows("INSERT OR REPLACE INTO jobs", rows)
        # OR IGNORE: one job's events in two partitions may share an offset; the first
        # partition's stay, as with the projector.
        tx.rows("INSERT OR IGNORE INTO job_events", events, nulls=False)
        tx.rows("INSERT OR IGNORE INTO job_event_ids", ids, nulls=False)
        tx.rows("INSERT OR REPLACE INTO runs", [run_row(s) for s in runs.values()])
        tx.many("INSERT INTO quarantine VALUES (?, ?, ?, ?, ?, ?)",
                [(JOBS, b.partition, b.offset, b.key, b.error, b.value) for b in bad])
        self.writer.run(tx, written)


def _outside(events: list[tuple[str, int, int]], first: str, end: str | None) -> int:
    """How many of the events' job ids are outside the range of keys [first, end)."""
    if not events or (min(events)[0] >= first and (end is None or max(events)[0] < end)):
        return 0  # the usual case, found by two passes in C
    return sum(1 for job_id, _, _ in events
               if job_id < first or (end is not None and job_id >= end))


def main(log: str, out: str, result: str, share: str) -> None:
    """A worker process of a replay (services/replay/rebuild.py starts it): folds its share (JSON:
    partitions, keys, indexes: fold_partitions' arguments) of the log into out, prints
    the records of each chunk as it goes, and leaves what else it found, pickled, in result."""
    partitions, keys, indexes = json.loads(share)
    # This process only folds, then exits: nothing it builds is cyclic garbage, and the
    # collector's passes over the chunks' objects cost about a tenth of its time.
    gc.disable()
    try:
        folded = fold_partitions(Path(log), Path(out), [tuple(p) for p in partitions],
                                 tuple(keys), indexes, on_chunk=lambda n: print(n, flush=True))
    except LogCorrupt as error:  # the parent raises it, as one line (no traceback here)
        Path(result).write_bytes(pickle.dumps(str(error)))
        sys.exit(DAMAGED_LOG)
    # The parent makes the file durable when it closes it (an fsync: about a second for
    # the read models of a million events); flushing what is written so far as each
    # worker ends overlaps most of that with the other worker's folding.
    fd = os.open(out, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    Path(result).write_bytes(pickle.dumps(folded))


if __name__ == "__main__":
    # Through the package, so that the pickled result names jobledger's classes, not __main__'s.
    from jobledger.services.replay.bulk import main as package_main

    package_main(*sys.argv[1:])


def _ids(envs: Iterable[Envelope]) -> list[tuple[str, int, int]]:
    """job_event_ids rows of a chunk's job events (queue events are not indexed)."""
    return [(env.id, env.partition, env.offset) for env in envs
            if not isinstance(env.event, QUEUE_EVENTS)]
