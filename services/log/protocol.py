"""The Log protocol: a partitioned, append-only topic. Both backends (SQLite, Kafka) implement it
and pass the one contract suite in tests/support/log_contract.py.

Requirements every backend meets:

1. `append` returns the (partition, offset) of every entry, in order, only once the entries
   are durable; entries of one partition get consecutive offsets in the order given.
2. Offsets of a partition start at 0 and grow by one per record; a record never changes.
3. `read` returns records of one partition from an offset, in offset order.
4. `tail` yields every record from the given positions on, batch by batch, and waits for
   new ones without polling: it wakes when an append lands.
5. `end_offsets` is the next offset of each partition (the count of records in it).
6. `offset_for_time` is the first offset whose timestamp is at or after a time, or None.
7. An entry with no partition goes to `partition_for(key)`: one key, one partition.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol


class Entry(NamedTuple):
    """Something to append. partition None: chosen from the key. (A NamedTuple: a batch
    enqueue builds 1,000 of them, and a frozen dataclass costs several times as much.)"""

    key: str
    value: bytes
    partition: int | None = None
    timestamp_ms: int | None = None


@dataclass(slots=True)
class Record:
    """A record as read back from the log. Treat it as immutable.

    `decoded` memoises the decoded envelope: consumers in one process that read the same
    record object (the projector and the dispatcher, embedded) decode it once.
    """

    partition: int
    offset: int
    timestamp_ms: int
    key: str
    value: bytes
    decoded: Any = field(default=None, compare=False, repr=False)


Position = tuple[int, int]  # (partition, offset)


@dataclass(frozen=True)
class LogIdentity:
    """Which log this is. The SQLite log writes a fresh one into its own metadata when the
    file is created (and into a file from before identities, the first time it is opened
    for writing), and never changes it. Read models record the identity of the log they
    were folded from, so a start can tell them from another log's
    (services/node/read_model_check.py)."""

    log_id: str
    epoch: int  # when the log was created, Unix ms; 0 when the backend cannot tell


class LogError(Exception):
    """The log could not do what was asked; the message says what and where."""


class AppendOutcomeUnknown(LogError):
    """The append may or may not have landed (a timeout): retry with the same ids."""


class DataFileError(LogError):
    """A data file is damaged, or does not belong with the others (a log lost or emptied
    beside read models that say what it held): nothing runs on it until someone restores
    or removes a file. The message names the file, what is wrong and what to do, in one
    line; the CLI exits with status 5 (`Exit.DATA`, services/cli/common.py)."""


class LogCorrupt(DataFileError):
    """SQLite finds the log file malformed (SQLITE_CORRUPT, SQLITE_NOTADB)."""


class Log(Protocol):
    """One topic."""

    @property
    def topic(self) -> str: ...

    @property
    def partitions(self) -> int: ...

    def partition_for(self, key: str) -> int: ...

    async def append(self, entries: Sequence[Entry], sync: bool = True) -> list[Position]:
        """Append entries; their positions once durable. sync=False (the dispatcher's own
        decisions, which no client waits on): the backend may leave the records to be
        flushed with the next synced append, as long as they survive the process being
        killed and an OS crash can only lose a suffix of them (the SQLite log)."""
        ...

    async def read(self, partition: int, offset: int, limit: int = 1000) -> list[Record]: ...

    def tail(
        self, positions: Mapping[int, int], limit: int = 5000
    ) -> AsyncIterator[list[Record]]: ...

    async def end_offsets(self) -> dict[int, int]: ...

    async def offset_for_time(self, partition: int, timestamp_ms: int) -> int | None: ...


class LogBackend(Protocol):
    """A set of topics on one backend (a SQLite file, a Kafka cluster)."""

    def topic(self, name: str) -> Log: ...

    async def identity(self) -> LogIdentity | None:
        """Which log this is; None if the backend cannot tell."""
        ...

    async def close(self) -> None: ...
