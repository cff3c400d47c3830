"""Opening the jobledger topics that exist under a prefix, with the partitions they have,
creating none: for readers (verify, anchor, export) of a Kafka log."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from jobledger.services.log.protocol import LogError


async def existing_topics(config: Any) -> set[str]:
    """The roles (jobs, logs, ...) that have a topic under config's prefix."""
    from aiokafka.admin import AIOKafkaAdminClient

    from jobledger.services.log.kafka import ROLES

    admin = AIOKafkaAdminClient(**config.client_settings())
    try:
        await admin.start()
        found = set(await admin.list_topics())
    except Exception as error:
        raise LogError(f"cannot reach Kafka at {config.bootstrap_servers}: {error!r}") from error
    finally:
        await admin.close()
    return {role for role in ROLES if config.topic_name(role) in found}


async def open_existing(config: Any) -> tuple[Any, dict[str, int]]:
    """The backend over the existing topics, and each one's partition count."""
    from jobledger.services.log.kafka import DEAD_LETTER, KafkaLogBackend

    roles = await existing_topics(config) - {DEAD_LETTER}
    if not roles:
        raise LogError(f"no jobledger topic under the prefix {config.topic_prefix!r} at "
                       f"{config.bootstrap_servers} (is --topic-prefix right?)")
    # At least one partition: topics keep the count they have. The backend starts a
    # producer, which readers never use: not the idempotent one, which some brokers refuse.
    existing = replace(config, partitions=1, idempotent=False)
    backend = await KafkaLogBackend.open(existing, dict.fromkeys(sorted(roles), 1))
    return backend, {role: backend.topic(role).partitions for role in sorted(roles)}
