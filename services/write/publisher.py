"""Wraps events in envelopes and appends them, batching every publish of one loop tick
into one append per topic (the log then group-commits those batches)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import TypedDict

from jobledger.schemas import Actor, Envelope, Event, encode, topic_of, uuid7
from jobledger.services.log.protocol import Entry, LogBackend, Position
from jobledger.services.runtime.clock import Clock

# Told (position, None) once an event is durable, or (None, error) if its append failed.
Done = Callable[[Position | None, BaseException | None], None]


class Cause(TypedDict, total=False):
    """The causal ids of an event to publish (docs/events.md, "Causal ids"), as keyword
    arguments of publish and publish_then."""

    causation_id: str | None
    correlation_id: str | None


NO_CAUSE = Cause()

# What waits for one event's append: a future, or a Done called at once.
_Waiter = asyncio.Future[Position] | Done
AppendTimer = Callable[[str, float], None]  # told (topic, seconds) of each append that landed


class Publisher:
    def __init__(self, backend: LogBackend, clock: Clock, actor: Actor, sync: bool = True):
        self.backend = backend
        self.clock = clock
        self.actor = actor
        self.sync = sync  # passed to every append (log.py): False for the dispatcher
        self._pending: dict[str, list[tuple[Entry, _Waiter]]] = {}
        self._flush_scheduled = False
        self._appending: set[asyncio.Task[None]] = set()
        self.timer: AppendTimer | None = None  # the append latency metrics (api/metrics.py)

    def envelope(
        self, event: Event, key: str, *, actor: Actor | None = None,
        causation_id: str | None = None, correlation_id: str | None = None,
        trace: dict[str, str] | None = None,
    ) -> Envelope:
        return Envelope(
            id=uuid7(), key=key, time=self.clock.now(), actor=actor or self.actor, event=event,
            causation_id=causation_id, correlation_id=correlation_id, trace=trace or {},
        )

    def publish(
        self, event: Event, key: str, *, partition: int | None = None,
        actor: Actor | None = None, causation_id: str | None = None,
        correlation_id: str | None = None, trace: dict[str, str] | None = None,
    ) -> asyncio.Future[Position]:
        """Queue one event; the future resolves to its position once it is durable."""
        env = self.envelope(event, key, actor=actor, causation_id=causation_id,
                            correlation_id=correlation_id, trace=trace)
        return self.publish_envelope(env, topic_of(event), partition)

    def publish_then(
        self, event: Event, key: str, done: Done, *, actor: Actor | None = None,
        causation_id: str | None = None, correlation_id: str | None = None,
    ) -> str:
        """As publish, but `done` is called as soon as the append ends, from the task that
        appended: no future and no turn of the loop per event (the dispatcher's picks and
        outcomes, a few per job). Returns the event's id (what its effects cite)."""
        env = self.envelope(event, key, actor=actor, causation_id=causation_id,
                            correlation_id=correlation_id)
        self._queue(topic_of(event), Entry(env.key, encode(env)), done)
        return env.id

    def publish_envelope(
        self, env: Envelope, topic: str, partition: int | None = None
    ) -> asyncio.Future[Position]:
        future: asyncio.Future[Position] = asyncio.get_running_loop().create_future()
        self._queue(topic, Entry(env.key, encode(env), partition), future)
        return future

    def _queue(self, topic: str, entry: Entry, waiter: _Waiter) -> None:
        self._pending.setdefault(topic, []).append((entry, waiter))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def append_now(self, topic: str, envs: Sequence[Envelope]) -> list[Position]:
        """Append a batch at once, as one unit (a REST batch enqueue)."""
        return await self._timed(topic, [Entry(e.key, encode(e)) for e in envs])

    async def _timed(self, topic: str, entries: list[Entry]) -> list[Position]:
        start = time.perf_counter()
        positions = await self.backend.topic(topic).append(entries, sync=self.sync)
        if self.timer is not None:
            self.timer(topic, time.perf_counter() - start)
        return positions

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, {}
        for topic, items in pending.items():
            task = asyncio.ensure_future(self._append(topic, items))
            self._appending.add(task)
            task.add_done_callback(self._appending.discard)

    async def drain(self) -> None:
        """Wait until everything published so far is appended."""
        while self._pending or self._appending:
            if self._pending:
                self._flush()
            await asyncio.gather(*self._appending, return_exceptions=True)

    async def _append(self, topic: str, items: list[tuple[Entry, _Waiter]]) -> None:
        try:
            positions = await self._timed(topic, [entry for entry, _ in items])
        except Exception as exc:  # every waiter learns the append failed
            for _, waiter in items:
                _tell(waiter, None, exc)
            return
        for (_, waiter), position in zip(items, positions, strict=True):
            _tell(waiter, position, None)


def unchecked(_: Position | None, error: BaseException | None) -> None:
    """The Done of an append whose failure needs no action of its own (a heartbeat, which
    the next one replaces; a log line): unlike a future nobody awaits, it leaves no
    "Future exception was never retrieved" behind when the log refuses it."""


def _tell(waiter: _Waiter, position: Position | None, error: Exception | None) -> None:
    if isinstance(waiter, asyncio.Future):
        if not waiter.done():
            if error is None:
                waiter.set_result(position)  # type: ignore[arg-type]  # set when error is None
            else:
                waiter.set_exception(error)
        return
    try:
        waiter(position, error)
    except Exception as exc:  # as a future's callback: the others are still told
        asyncio.get_running_loop().call_exception_handler(
            {"message": "a publish_then callback failed", "exception": exc})
