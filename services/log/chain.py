"""The hash chain of a partition: what makes the log tamper-evident (docs/audit.md).

Each record's link is SHA-256 over the previous link, the record's offset, its key and its
value, the bytes exactly as stored (whatever fields the envelope has). The first link of a
partition starts from a genesis hash naming the topic (its role: `jobs`, not a Kafka topic
name) and the partition, so a record moved to another partition or topic breaks the chain.

The record's timestamp is not covered: the event's own time is in the value, and a Kafka
topic may stamp records with its own time. Links depend only on the records, so a log
copied record for record (export/import, the migration to Kafka) has the same chain.
"""

from __future__ import annotations

import hashlib
import struct

VERSION = b"jobledger.chain/1"
LINK_BYTES = 32
_OFFSET_AND_KEY_LENGTH = struct.Struct(">QI").pack  # 8 bytes big-endian, then 4


def genesis(topic: str, partition: int) -> bytes:
    """The link 'before' offset 0 of a partition."""
    return hashlib.sha256(b"%s\0%s\0%d" % (VERSION, topic.encode(), partition)).digest()


def link(prev: bytes, offset: int, key: str, value: bytes) -> bytes:
    """The link of the record at offset, following prev. Key and offset have fixed-size
    prefixes, so no two different records give the same input."""
    key_bytes = key.encode()
    digest = hashlib.sha256(prev + _OFFSET_AND_KEY_LENGTH(offset, len(key_bytes)) + key_bytes)
    digest.update(value)
    return digest.digest()


class Chainer:
    """The next link of each partition, for an appender that is the only writer of a
    partition (the SQLite log's writer thread): links are computed as offsets are given,
    in offset order. heads: (topic, partition) -> link of the last record."""

    def __init__(self, heads: dict[tuple[str, int], bytes]):
        self.heads = heads

    def next(self, topic: str, partition: int, offset: int, key: str, value: bytes) -> bytes:
        slot = (topic, partition)
        prev = self.heads.get(slot)
        if prev is None:
            prev = genesis(topic, partition)
        self.heads[slot] = new = link(prev, offset, key, value)
        return new
