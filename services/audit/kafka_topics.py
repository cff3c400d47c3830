"""Opening the jobledger topics that exist under a prefix, with the partitions they have,
creating none: for readers (verify, anchor, export) of a Kafka log."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from jobledger.services.log.protocol import LogError


async def open_existing(config: Any) -> tuple[Any, dict[str, int]]:
    """The backend over the existing topics, and each one's partition count."""
    from jobledger.services.log.kafka import DEAD_LETTER, KafkaLogBackend, existing_topics

    roles = await existing_topics(config) - {DEAD_LETTER}
    if not roles:
        raise LogError(f"no jobledger topic under the prefix {config.topic_prefix!r} at "
                       f"{config.bootstrap_servers} (is --topic-prefix right?)")
    # At least one partition: topics keep the count they have. The backend starts a
    # producer, which readers never use: not the idempotent one, which some brokers refuse.
    existing = replace(config, partitions=1, idempotent=False)
    backend = await KafkaLogBackend.open(existing, dict.fromkeys(sorted(roles), 1))
    return backend, {role: backend.topic(role).partitions for role in sorted(roles)}
