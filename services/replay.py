"""`jobledger replay`: rebuild every read model from offset 0 into a fresh file, from a
SQLite log file or (`--broker`) from the Kafka topics."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from rich.progress import Progress

from jobledger.projections.projector import TOPIC_OF_MODEL, Projector
from jobledger.projections.store import ReadModelStore
from jobledger.schemas import JOBS, LOGS, WORKERS

from .log import LogBackend, LogError
from .sqlite_log import SQLiteLogBackend

if TYPE_CHECKING:
    from .kafka_log import KafkaConfig


async def replay(db: Path, out: Path, show_progress: bool = True) -> dict[str, str]:
    """Rebuild the read models of the log at db into out (replaced); their checksums."""
    await rebuild(db, out, show_progress)
    return await checksums(out)


async def replay_topics(config: KafkaConfig, out: Path, show_progress: bool = True) -> dict[str, str]:
    """Rebuild the read models of the Kafka topics `config` names into out (replaced);
    their checksums. The topics are read with the partitions they have."""
    from aiokafka.admin import AIOKafkaAdminClient

    from .kafka_log import KafkaLogBackend, jobledger_topics

    admin = AIOKafkaAdminClient(**config.client_settings())  # type: ignore[arg-type]
    try:
        await admin.start()
        found = set(await admin.list_topics())
    except Exception as error:
        raise LogError(f"cannot reach Kafka at {config.bootstrap_servers}: {error!r}") from error
    finally:
        await admin.close()
    if config.topic_name(JOBS) not in found:
        raise LogError(f"no topic {config.topic_name(JOBS)!r} at {config.bootstrap_servers}: "
                       "nothing to replay (is --topic-prefix right?)")  # fmt: skip
    existing = replace(config, partitions=1)  # at least one: topics keep the count they have
    backend = await KafkaLogBackend.open(existing, jobledger_topics(existing))
    await rebuild_from(backend, out, show_progress)
    return await checksums(out)


async def rebuild(db: Path, out: Path, show_progress: bool = True) -> None:
    """Rebuild the read models of the log at db into out, replacing it."""
    backend = await SQLiteLogBackend.open(db, {JOBS: 0, LOGS: 0, WORKERS: 0}, read_only=True)
    await rebuild_from(backend, out, show_progress)


async def rebuild_from(backend: LogBackend, out: Path, show_progress: bool = True) -> None:
    """Rebuild the read models of an open log into out, replacing it; closes the log.

    The models are built in a fresh file next to out, with durability off (store.py,
    bulk), and renamed over out only once complete: a crash or an error leaves out as it
    was, and the half-built file is only ever replayed again, never read."""
    building = Path(f"{out}.building")
    _remove_db(building)
    try:
        store = await ReadModelStore.open(building, bulk=True)
        try:
            await _catch_up(Projector(backend, store), backend, show_progress)
            await store.finish_bulk()
        finally:
            await store.close()
        _remove_sidecars(out)  # SQLite would apply out's old -wal to the new file
        os.replace(building, out)
    except BaseException:
        _remove_db(building)
        raise
    finally:
        await backend.close()


async def _catch_up(projector: Projector, backend: LogBackend, show_progress: bool) -> None:
    total = 0
    for topic in TOPIC_OF_MODEL.values():
        try:
            total += sum((await backend.topic(topic).end_offsets()).values())
        except LogError:
            pass  # a log written before this topic existed (the projector skips it too)
    with Progress(disable=not show_progress, transient=True) as bar:
        task = bar.add_task("replaying events", total=total)
        await projector.catch_up(on_batch=lambda n: bar.advance(task, n))


def _remove_db(path: Path) -> None:
    path.unlink(missing_ok=True)
    _remove_sidecars(path)


def _remove_sidecars(path: Path) -> None:
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def checksums(views: Path) -> dict[str, str]:
    store = await ReadModelStore.open(views)
    try:
        return await store.checksums()
    finally:
        await store.close()
