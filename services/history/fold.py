"""Folding a log into read models up to a position: what an as_of does after the snapshot
it starts from, and what a log-retention cut does to build its base."""

from __future__ import annotations

from collections.abc import Iterable

from jobledger.services.log.protocol import LogBackend, LogError
from jobledger.services.runtime.projector import TOPIC_OF_MODEL, Projector

from .position import Positions

READ_BATCH = 20_000  # records read at a time while folding


async def fold_to(projector: Projector, backend: LogBackend, target: Positions,
                  models: Iterable[str]) -> None:
    """Apply each model's records from where the projector stands up to `target` (topic ->
    partition -> end offset). A topic the log does not have is skipped."""
    for model in models:
        topic = TOPIC_OF_MODEL[model]
        try:
            log = backend.topic(topic)
        except LogError:
            continue
        for partition, end in target.get(topic, {}).items():
            start = projector.positions[model].get(partition, 0)
            while start < end:
                records = await log.read(partition, start, limit=min(READ_BATCH, end - start))
                if not records:
                    break
                await projector.apply(model, records)
                start = records[-1].offset + 1
