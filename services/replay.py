"""`jobledger replay`: rebuild every read model from offset 0 into a fresh file."""

from __future__ import annotations

from pathlib import Path

from rich.progress import Progress

from jobledger.projections.projector import TOPIC_OF_MODEL, Projector
from jobledger.projections.store import ReadModelStore
from jobledger.schemas import JOBS, LOGS, WORKERS

from .log import LogError
from .sqlite_log import SQLiteLogBackend


async def replay(db: Path, out: Path, show_progress: bool = True) -> dict[str, str]:
    """Rebuild the read models of the log at db into out (replaced); their checksums."""
    await rebuild(db, out, show_progress)
    return await checksums(out)


async def rebuild(db: Path, out: Path, show_progress: bool = True) -> None:
    """Rebuild the read models of the log at db into out, replacing it."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{out}{suffix}").unlink(missing_ok=True)
    backend = await SQLiteLogBackend.open(db, {JOBS: 0, LOGS: 0, WORKERS: 0}, read_only=True)
    store = await ReadModelStore.open(out, bulk=True)
    try:
        projector = Projector(backend, store)
        total = 0
        for topic in TOPIC_OF_MODEL.values():
            try:
                total += sum((await backend.topic(topic).end_offsets()).values())
            except LogError:
                pass  # a log written before this topic existed (the projector skips it too)
        with Progress(disable=not show_progress, transient=True) as bar:
            task = bar.add_task("replaying events", total=total)
            await projector.catch_up(on_batch=lambda n: bar.advance(task, n))
        await store.finish_bulk()
    finally:
        await store.close()
        await backend.close()


async def checksums(views: Path) -> dict[str, str]:
    store = await ReadModelStore.open(views)
    try:
        return await store.checksums()
    finally:
        await store.close()
