"""Passing faults: what keeps a part of a node from its work for a while (a full disk, a
busy or unreadable file) and mends by itself once the cause is gone.

A part that meets one (a projection's write, the dispatcher's appends) does not die: it
tells its `Faults` (`failing`), waits the delay that gives, and tries again; its first
success after that ends the fault (`resumed`). A fault is logged once as it starts
(warning) and once as it ends (info), and /health names every open one as the reason it
is degraded. Any other error (a bug, a damaged file) still ends the part, as before.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from jobledger.services.runtime.clock import Clock
from jobledger.services.runtime.server_log import note

log = logging.getLogger("jobledger.node")
T = TypeVar("T")
FIRST_RETRY_S = 0.5  # the first wait before trying again
MAX_RETRY_S = 10.0  # the longest: a freed disk is used again within this long
# SQLite's primary result codes of faults that can pass, and what they mean for people.
_PASSING = {13: "disk full", 10: "disk I/O error", 5: "database busy", 6: "database locked",
            14: "cannot open a file", 8: "file is read-only"}


def passing_fault(error: BaseException) -> str | None:
    """The fault behind error if it can pass, for people: 'disk full (SQLITE_FULL)'. None
    for any other error, which trying again would not mend. Looks through the causes, so
    a LogError raised from a full disk's sqlite3 error counts."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, sqlite3.OperationalError):
            code = getattr(cause, "sqlite_errorcode", None)
            if code is None or code & 0xFF not in _PASSING:
                return None
            return f"{_PASSING[code & 0xFF]} ({cause.sqlite_errorname})"
        if isinstance(cause, OSError) and cause.errno is not None:
            return f"{os.strerror(cause.errno)} ({errno.errorcode.get(cause.errno, cause.errno)})"
        cause = cause.__cause__
    return None


@dataclass
class Fault:
    part: str  # "projection jobs", "dispatcher appends"
    what: str  # "disk full (SQLITE_FULL)": the first error of the fault
    since: datetime
    meanwhile: str = "retrying"  # what the part does until it passes

    def reason(self) -> str:
        """For /health: "projection jobs: disk full (SQLITE_FULL) since <time>, retrying"."""
        return (f"{self.part}: {self.what} since {self.since:%Y-%m-%dT%H:%M:%SZ}, "
                f"{self.meanwhile}")


class Faults:
    """The open faults of one piece of a node (a projector, a dispatcher), by part."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self.open: dict[str, Fault] = {}

    def failing(self, part: str, what: str) -> float:
        """Part failed with what (a fault that may pass); the seconds to wait before it
        tries again: half as long as it has been failing, from FIRST_RETRY_S up to
        MAX_RETRY_S. The first error of a fault is the one it keeps and reports."""
        now = self.clock.now()
        fault = self.open.get(part)
        if fault is None:
            fault = self.open[part] = Fault(part, what, now)
            note(log, logging.WARNING, "fault.started", "%s: %s; retrying until it passes",
                 part, what, part=part, fault=what)
        failing_for = (now - fault.since).total_seconds()
        return min(MAX_RETRY_S, max(FIRST_RETRY_S, failing_for / 2))

    def resumed(self, part: str) -> None:
        """Part succeeded: its fault, if any, is over."""
        if not self.open:  # the common case, on every write and every pick
            return
        fault = self.open.pop(part, None)
        if fault is not None:
            seconds = (self.clock.now() - fault.since).total_seconds()
            note(log, logging.INFO, "fault.ended", "%s: resumed after %.1f s (%s)", part,
                 seconds, fault.what, part=part, fault=fault.what, seconds=round(seconds, 3))

    def reasons(self) -> list[str]:
        return [fault.reason() for fault in self.open.values()]


class Later:
    """Actions to take again after a wait by the clock (a decision whose append failed);
    stop() drops those still waiting."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self._waiting: set[asyncio.Task[None]] = set()

    def call(self, seconds: float, action: Callable[[], None]) -> None:
        task = asyncio.ensure_future(self._after(seconds, action))
        self._waiting.add(task)
        task.add_done_callback(self._waiting.discard)

    async def _after(self, seconds: float, action: Callable[[], None]) -> None:
        await self.clock.sleep(seconds)
        action()

    async def stop(self) -> None:
        for task in self._waiting:
            task.cancel()
        await asyncio.gather(*self._waiting, return_exceptions=True)


async def retried_reads(
    faults: Faults, part: str, open_tail: Callable[[], Awaitable[AsyncIterator[T]]],
    passing: Callable[[BaseException], str | None] = passing_fault,
) -> AsyncIterator[T]:
    """The batches of a tail, which open_tail starts from where its reader has got to. A
    read that fails with a fault that can pass (passing) is a fault of part: after its
    backoff a fresh tail starts (before, the read's error ended the projections for good:
    fault-injection row R14). Any other error, and the reader's own, still end it."""
    while True:
        tail = await open_tail()
        try:
            while True:
                try:
                    batch = await anext(tail)
                except StopAsyncIteration:
                    return
                except Exception as error:
                    what = passing(error)
                    if what is None:
                        raise
                    break
                faults.resumed(part)
                yield batch
        finally:
            await tail.aclose()  # type: ignore[attr-defined]
        await faults.clock.sleep(faults.failing(part, what))
