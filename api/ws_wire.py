"""How the hub's messages reach the sockets: each message encoded and framed once for every
client (Outgoing), a client's pending messages written together (Batch, Wire), and the
fan-out's share of the event loop bounded (Turns), so that REST requests are served while
thousands of messages go out. What each of these saved: docs/performance.md, "Figures
behind the code"."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Hashable

from starlette.types import Scope, Send

from .ws_protocol import SEND_FRAMES, text_frame


class Outgoing:
    """One message: its UTF-8 JSON, and its frame, built the first time a client needs it
    and then shared by every client."""

    __slots__ = ("payload", "size", "_frame")

    def __init__(self, payload: bytes):
        self.payload = payload
        self.size = len(payload)
        self._frame: bytes | None = None

    def frame(self) -> bytes:
        if self._frame is None:
            self._frame = text_frame(self.payload)
        return self._frame


class Batch:
    """Messages a client is sent together; their frames are joined the first time a client
    is sent them, and clients at the same place with the same filters share the batch."""

    __slots__ = ("messages", "_frames")

    def __init__(self, messages: list[Outgoing]):
        self.messages = messages
        self._frames: bytes | None = None

    def frames(self) -> bytes:
        if self._frames is None:
            self._frames = b"".join(m.frame() for m in self.messages)
        return self._frames


class Wire:
    """One connection's writes. Where the server offers SEND_FRAMES (`jobledger serve` and
    `jobledger api`, api/ws_protocol.py), a batch is one write of ready-made frames; under
    another ASGI server (Starlette's TestClient) each message is a websocket.send."""

    def __init__(self, scope: Scope, send: Send):
        self._send = send
        self.framed = SEND_FRAMES in (scope.get("extensions") or {})

    async def send(self, batch: Batch) -> None:
        """Raises OSError (or RuntimeError, after a close) when the client is gone."""
        if self.framed:
            await self._send({"type": SEND_FRAMES, "frames": batch.frames()})
            return
        for message in batch.messages:
            await self._send({"type": "websocket.send", "text": message.payload.decode()})


class Turns:
    """Turns for the clients' senders: round robin, and a bounded number per pass of the
    event loop, so that the fan-out takes about `slice_s` of each pass and the rest of the
    pass serves everything else. A REST request that arrives during a fan-out to thousands
    of clients then waits about one slice at each of its steps, not for every client's whole
    backlog; and a burst of requests cannot starve the fan-out either.

    A key (a client) is `ready` when it has something to send; its sender waits in `take`
    for its turn, does one batch of work, and is `ready` again if more is left. A ready key
    wakes nobody: the turns of a pass are granted by one callback, which times the turns
    that ran at the pass before and grants as many as fit the slice, growing at most
    twofold a pass. A turn's cost varies (the same write took 20 µs or 80 µs as the readers
    were busy or not), so a granted turn that finds the slice spent gives its place back,
    first in line for the next pass: a pass overruns the slice by one turn at most."""

    MAX_PER_PASS = 4096

    def __init__(self, slice_s: float, clock: Callable[[], float] = time.perf_counter):
        self.slice_s = slice_s
        self.clock = clock
        self.per_pass = 16  # turns granted in one pass; adjusted to the time they take
        self.work: set[Hashable] = set()  # keys with something to send
        self.parked: dict[Hashable, asyncio.Future[None]] = {}  # senders waiting in take()
        self.queue: deque[Hashable] = deque()  # keys with work and a parked sender, in order
        self.queued: set[Hashable] = set()  # the keys in the queue (it may hold stale ones)
        self.deferred: list[Hashable] = []  # granted, found the slice spent: next in line
        self.scheduled = False  # a grant is due at the next pass
        self.granted = 0  # turns granted by the last grant
        self.ran = 0  # of those, the turns that ran
        self.pass_started: float | None = None  # when the first of them began

    def ready(self, key: Hashable) -> None:
        self.work.add(key)
        if key in self.parked:
            self._enqueue(key)

    def forget(self, key: Hashable) -> None:
        self.work.discard(key)
        self.queued.discard(key)

    async def take(self, key: Hashable) -> None:
        """Return at key's turn, once it has work."""
        while True:
            await self._turn(key)
            if self.pass_started is None:
                self.pass_started = self.clock()
            elif self.clock() - self.pass_started >= self.slice_s:
                self.work.add(key)  # the slice is spent: first in line at the next pass
                self.queued.add(key)
                self.deferred.append(key)
                continue
            self.ran += 1
            return

    async def _turn(self, key: Hashable) -> None:
        turn = asyncio.get_running_loop().create_future()
        self.parked[key] = turn
        if key in self.work:
            self._enqueue(key)
        try:
            await turn
        finally:  # granted, or cancelled while waiting (the client is leaving)
            self.parked.pop(key, None)
            self.queued.discard(key)

    def _enqueue(self, key: Hashable) -> None:
        if key not in self.queued:
            self.queued.add(key)
            self.queue.append(key)
        self._schedule()

    def _schedule(self) -> None:
        if not self.scheduled:
            self.scheduled = True
            # At the next pass: after the senders granted in this one, which run first
            # there, and before what this pass's socket events started.
            asyncio.get_running_loop().call_soon(self._grant)

    def _grant(self) -> None:
        """Grant this pass's turns; the previous pass's, if any, have just run."""
        self.scheduled = False
        if self.ran and self.pass_started is not None:
            spent = max(self.clock() - self.pass_started, 1e-6)
            # At most twice as many as ran: turns timed while few clients had little to
            # send say nothing of a burst that queues them all at once (312 turns of a
            # 4 ms estimate once took 25 ms), so the number grows as it is proven.
            fit = round(self.ran * self.slice_s / spent)
            self.per_pass = max(1, min(fit, 2 * self.ran, self.MAX_PER_PASS))
        self.pass_started = None
        self.granted = self.ran = 0
        self.queue.extendleft(reversed(self.deferred))
        self.deferred.clear()
        while self.queue and self.granted < self.per_pass:
            key = self.queue.popleft()
            if key not in self.queued:
                continue  # it left, or was granted from an older place in the line
            self.queued.discard(key)
            self.work.discard(key)
            self.parked.pop(key).set_result(None)
            self.granted += 1
        if self.granted:
            self._schedule()  # to time these turns, and grant the next
