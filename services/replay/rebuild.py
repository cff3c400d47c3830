"""`jobledger replay`: rebuild every read model from offset 0 into a fresh file, from a
SQLite log file or (`--broker`) from the Kafka topics."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.progress import Progress

from jobledger.projections.fold import JobsChange
from jobledger.projections.queues import QueueState, reduce_queue
from jobledger.projections.stats import StatsDelta
from jobledger.projections.store import ReadModelStore, sql_file
from jobledger.projections.store_file import remove_db, remove_sidecars
from jobledger.schemas import JOBS, LOGS, WORKERS, Envelope
from jobledger.services.history.log_retention import base_path, copy_db
from jobledger.services.log.protocol import LogBackend, LogCorrupt, LogError
from jobledger.services.log.sqlite import SQLiteLogBackend, read_cuts, sample_keys
from jobledger.services.node.read_model_check import record_log_source
from jobledger.services.replay.bulk import DAMAGED_LOG, Folded, fold_partitions
from jobledger.services.replay.guard import refuse_an_open_file
from jobledger.services.runtime.projector import TOPIC_OF_MODEL, Projector
from jobledger.services.runtime.server_log import note

if TYPE_CHECKING:
    from jobledger.services.log.kafka import KafkaConfig

replay_log = logging.getLogger("jobledger.replay")
PROGRESS_EVERY_S = 5.0  # at most one progress line this often


async def replay(db: Path, out: Path, show_progress: bool = True) -> dict[str, str]:
    """Rebuild the read models of the log at db into out (replaced); their checksums."""
    await rebuild(db, out, show_progress)
    return await checksums(out)


async def replay_topics(
    config: KafkaConfig, out: Path, show_progress: bool = True
) -> dict[str, str]:
    """Rebuild the read models of the Kafka topics `config` names into out (replaced);
    their checksums. The topics are read with the partitions they have."""
    from jobledger.services.log.kafka import KafkaLogBackend, existing_topics, jobledger_topics

    if JOBS not in await existing_topics(config):
        raise LogError(f"no topic {config.topic_name(JOBS)!r} at {config.bootstrap_servers}: "
                       "nothing to replay (is --topic-prefix right?)")  # fmt: skip
    existing = replace(config, partitions=1)  # at least one: topics keep the count they have
    backend = await KafkaLogBackend.open(existing, jobledger_topics(existing))
    await rebuild_from(backend, out, show_progress)
    return await checksums(out)


async def rebuild(
    db: Path, out: Path, show_progress: bool = True, processes: int | None = None
) -> None:
    """Rebuild the read models of the log at db into out, replacing it. The jobs model is
    folded in bulk (services/replay/bulk.py), in `processes` worker processes (None: one
    per core for a large log, none for a small one)."""
    backend = await SQLiteLogBackend.open(db, {JOBS: 0, LOGS: 0, WORKERS: 0}, read_only=True)
    base = await _base_of_a_cut_log(backend, db)
    if base is not None:  # the log starts at a cut: from the read models there, no bulk
        await rebuild_from(backend, out, show_progress, start=base)
        return
    try:
        await rebuild_from(backend, out, show_progress, _BulkJobs(db, processes))
    except _KeysAreNotJobIds:
        # Never written by jobledger itself; the projector folds such a log as it is.
        backend = await SQLiteLogBackend.open(db, {JOBS: 0, LOGS: 0, WORKERS: 0}, read_only=True)
        await rebuild_from(backend, out, show_progress)


async def _base_of_a_cut_log(backend: SQLiteLogBackend, db: Path) -> Path | None:
    """The base a log cut by --log-retention starts from (None: never cut); LogError if it
    is missing (services/history/log_retention.py)."""
    from jobledger.services.node.embedded import views_path

    if not await backend.run(read_cuts, backend.reader):
        return None
    base = base_path(views_path(db))
    if not base.exists():
        await backend.close()
        raise LogError(f"the log {db} was cut by --log-retention and starts from the read "
                       f"models at the cut, {base}, which is missing: restore it beside "
                       "the log")
    return base


async def rebuild_from(
    backend: LogBackend, out: Path, show_progress: bool = True, bulk: _BulkJobs | None = None,
    start: Path | None = None,
) -> None:
    """Rebuild the read models of an open log into out, replacing it; closes the log.
    Without bulk (a Kafka log), every model goes through the live Projector. start: read
    models to start from (a cut log's base), copied; else from offset 0.

    The models are built in a fresh file next to out, with durability off (store.py,
    bulk), and renamed over out only once complete: a crash or an error leaves out as it
    was, and the half-built file is only ever replayed again, never read. An out that a
    process holds open (a server's read models) is refused with OutInUse (guard.py)."""
    building = Path(f"{out}.building")
    try:
        refuse_an_open_file(out)
        remove_db(building)
        try:
            if start is not None:
                await asyncio.to_thread(copy_db, start, building)
            store = await ReadModelStore.open(building, bulk=True)
            try:
                await record_log_source(store, backend)  # a server may adopt the file
                projector = Projector(backend, store)
                await projector.load()  # the checkpoints of start, if any
                await _catch_up(projector, backend, show_progress, bulk)
                await store.finish_bulk()
            finally:
                await store.close()
            remove_sidecars(out)  # SQLite would apply out's old -wal to the new file
            os.replace(building, out)
        except BaseException:
            remove_db(building)
            raise
    finally:
        await backend.close()


async def _catch_up(
    projector: Projector, backend: LogBackend, show_progress: bool, bulk: _BulkJobs | None
) -> None:
    total = 0
    for topic in TOPIC_OF_MODEL.values():
        try:
            total += sum((await backend.topic(topic).end_offsets()).values())
        except LogError:
            pass  # a log written before this topic existed (the projector skips it too)
    logged = ReplayProgress(total)
    with Progress(disable=not show_progress, transient=True) as bar:
        task = bar.add_task("replaying events", total=total)

        def advance(events: int) -> None:
            bar.advance(task, events)
            logged.advance(events)

        if bulk is not None:
            # The jobs model first: a worker writes the store's file meanwhile, so nothing
            # else may. The projector then finds the jobs topic applied.
            ends = await backend.topic(JOBS).end_offsets()
            await bulk.fold(ends, projector, advance)
        await projector.catch_up(on_batch=advance)
    logged.finished()


class ReplayProgress:
    """A replay's progress as log lines (services/runtime/server_log.py): one as it starts,
    one every PROGRESS_EVERY_S at most while it runs, one when every event is applied."""

    def __init__(self, total: int, now: Callable[[], float] = time.monotonic):
        self.total = total
        self.done = 0
        self.now = now  # only paces the lines: the replay's results never depend on it
        self.started = self.last = now()
        note(replay_log, logging.INFO, "replay.started", "replay: applying %d events from "
             "offset 0", total, total=total)

    def advance(self, events: int) -> None:
        self.done += events
        now = self.now()
        if now - self.last >= PROGRESS_EVERY_S and self.done < self.total:
            self.last = now
            note(replay_log, logging.INFO, "replay.progress",
                 "replay: %d of %d events applied (%d%%), %d events/s", self.done, self.total,
                 100 * self.done // max(self.total, 1), self._rate(now), events=self.done,
                 total=self.total)

    def finished(self) -> None:
        now = self.now()
        note(replay_log, logging.INFO, "replay.finished",
             "replay: %d events applied in %.1fs, %d events/s", self.done, now - self.started,
             self._rate(now), events=self.done, seconds=round(now - self.started, 3))

    def _rate(self, now: float) -> int:
        return round(self.done / (now - self.started)) if now > self.started else 0


class _BulkJobs:
    """The jobs model of a SQLite log folded in bulk (services/replay/bulk.py): in worker
    processes for a big log, or in a thread for a small one. The workers write into the
    store's file themselves, in turns."""

    def __init__(self, log: Path, processes: int | None):
        self.log = log
        self.processes = processes
        self.workers: list[asyncio.subprocess.Process] = []

    async def fold(
        self, ends: dict[int, int], projector: Projector, advance: Callable[[int], None]
    ) -> None:
        """Fold the jobs topic up to ends into the projector's store; the projector then
        starts the jobs model at ends."""
        store = projector.store
        partitions = [(p, end) for p, end in sorted(ends.items()) if end]
        workers = self._processes(sum(ends.values()))
        keys = await asyncio.to_thread(_key_ranges, self.log, dict(partitions), workers)
        try:
            if workers == 1 and not self.processes:
                folded = [await asyncio.to_thread(fold_partitions, self.log, store.path, partitions,
                                                  keys[0], True)]
                advance(sum(ends.values()))
            else:
                # Kept up to date by the workers as they write (their turns overlap the
                # other's folding) rather than built by the parent alone at the end.
                await store.db.executescript(sql_file("indexes.sql"))
                folded = await asyncio.gather(*(
                    self._in_process(store.path, i, [partitions, share, False], advance)
                    for i, share in enumerate(keys)))
            if any(f.strays for f in folded):
                raise _KeysAreNotJobIds()
            await self._finish(folded, store)
        finally:
            self._close(store.path)
        projector.positions["jobs"] = {p: o for f in folded for p, o in f.positions.items()}

    def _processes(self, events: int) -> int:
        if self.processes is not None:
            return max(self.processes, 1)
        return min(os.cpu_count() or 1, 2) if events >= _PROCESSES_FROM else 1

    async def _in_process(self, out: Path, number: int, share: list[Any],
                          advance: Callable[[int], None]) -> Folded:
        """fold_partitions in a process of its own (a fresh interpreter: a fork would copy
        the event loop's threads), which reports each chunk folded on its stdout."""
        result = Path(f"{out}-{number}.folded")
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "jobledger.services.replay.bulk", str(self.log), str(out),
            str(result), json.dumps(share),
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        self.workers.append(worker)
        try:
            assert worker.stdout is not None
            async for line in worker.stdout:
                advance(int(line))
            if await worker.wait() == DAMAGED_LOG:
                raise LogCorrupt(pickle.loads(result.read_bytes()))
            if worker.returncode != 0:
                raise RuntimeError(f"a replay worker failed (exit status {worker.returncode});"
                                   " its error is above")
            return pickle.loads(result.read_bytes())  # type: ignore[no-any-return]  # pickle is untyped
        finally:
            result.unlink(missing_ok=True)

    def _close(self, out: Path) -> None:
        """Stop the workers still running (after an error) and remove their lock file."""
        for worker in self.workers:
            if worker.returncode is None:
                worker.kill()
        Path(f"{out}.turn").unlink(missing_ok=True)

    async def _finish(self, folded: list[Folded], store: ReadModelStore) -> None:
        """Write the summed stats, the queues and the checkpoint."""
        change = JobsChange(stats=_summed(f.stats for f in folded),
                            queues=_queues(e for f in folded for e in f.queue_events))
        positions = {p: o for f in folded for p, o in f.positions.items()}
        await store.write_jobs(change, positions, [])


_PROCESSES_FROM = 200_000  # jobs records from which the workers are processes, not a thread


def _key_ranges(log: Path, ends: dict[int, int], workers: int) -> list[tuple[str, str | None]]:
    """The range of keys (from, before) of each worker: the jobs records split at sampled
    quantiles of their keys. Each worker folds the jobs whose ids are in its range, from
    every partition, so each writes about as many rows, and the rows of the later ranges
    go after the earlier ones' in every table's key order."""
    if workers == 1:
        return [("", None)]
    keys = sample_keys(log, JOBS, ends, _SAMPLES // max(len(ends), 1) + 1)
    if not keys:
        return [("", None)]  # an empty topic: nothing to split
    cuts = sorted({keys[len(keys) * i // workers] for i in range(1, workers)} - {""})
    return list(zip(["", *cuts], [*cuts, None], strict=True))


class _KeysAreNotJobIds(Exception):
    """Some jobs record's key is not its job id: a worker folded part of a job's events."""


_SAMPLES = 1_000  # keys sampled to split the jobs topic between workers


def _summed(deltas: Iterable[StatsDelta]) -> StatsDelta:
    total = StatsDelta()
    for delta in deltas:
        total.add(delta)
    return total


def _queues(events: Iterable[Envelope]) -> dict[str, QueueState]:
    """The queues' states from their events, partition after partition as the projector
    applies them (each partition holds a copy of every queue event)."""
    queues: dict[str, QueueState] = {}
    for env in sorted(events, key=attrgetter("partition", "offset")):
        name = env.event.queue  # type: ignore[union-attr]  # only queue events come here
        state = reduce_queue(queues.get(name), env)
        if state is not None:
            queues[name] = state
    return queues


async def checksums(views: Path) -> dict[str, str]:
    store = await ReadModelStore.open_to_read(views)
    try:
        return await store.checksums()
    finally:
        await store.close()
