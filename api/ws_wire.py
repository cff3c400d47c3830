"""How the hub's messages reach the sockets: each message encoded and framed once for every
client (Outgoing), a client's pending messages written together (Wire), and the fan-out's
share of the event loop bounded (Turns), so that REST requests are served while thousands
of messages go out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable, Sequence

from starlette.types import Scope, Send

from .ws_protocol import SEND_FRAMES, text_frame


class Outgoing:
    """One message: its UTF-8 JSON, and its frame, built the first time a client needs it
    and then shared by every client."""

    __slots__ = ("payload", "_frame")

    def __init__(self, payload: bytes):
        self.payload = payload
        self._frame: bytes | None = None

    def frame(self) -> bytes:
        if self._frame is None:
            self._frame = text_frame(self.payload)
        return self._frame

    def __len__(self) -> int:
        return len(self.payload)


class Wire:
    """One connection's writes. Where the server offers SEND_FRAMES (`jobledger serve` and
    `jobledger api`, api/ws_protocol.py), a batch is one write of ready-made frames; under
    another ASGI server (Starlette's TestClient) each message is a websocket.send."""

    def __init__(self, scope: Scope, send: Send):
        self._send = send
        self.framed = SEND_FRAMES in (scope.get("extensions") or {})

    async def send(self, batch: Sequence[Outgoing]) -> None:
        """Raises OSError (or RuntimeError, after a close) when the client is gone."""
        if self.framed:
            await self._send({"type": SEND_FRAMES, "frames": b"".join(m.frame() for m in batch)})
            return
        for message in batch:
            await self._send({"type": "websocket.send", "text": message.payload.decode()})


class Turns:
    """Turns for the clients' senders: round robin, and a bounded number per pass of the
    event loop, so that the fan-out takes about `slice_s` of each pass and the rest of the
    pass serves everything else. A REST request that arrives during a fan-out to thousands
    of clients then waits about one slice at each of its steps, not for every client's whole
    backlog; and a burst of requests cannot starve the fan-out either.

    A key (a client) is `ready` when it has something to send; its sender waits in `take`
    for its turn, does one batch of work, and is `ready` again if more is left. A ready key
    wakes nobody: the turns of a pass are granted by one callback, which also measures how
    long the turns it granted at the pass before took, and scales the number it grants to
    fit the slice."""

    MAX_PER_PASS = 4096

    def __init__(self, slice_s: float, clock: Callable[[], float] = time.perf_counter):
        self.slice_s = slice_s
        self.clock = clock
        self.per_pass = 16  # turns granted in one pass; adjusted to the time they take
        self.work: set[Hashable] = set()  # keys with something to send
        self.parked: dict[Hashable, asyncio.Future[None]] = {}  # senders waiting in take()
        self.queue: dict[Hashable, None] = {}  # keys with work and a parked sender, in order
        self.scheduled = False  # a grant is due at the next pass
        self.granted = 0  # turns granted by the last grant
        self.pass_started: float | None = None  # when the first of them began

    def ready(self, key: Hashable) -> None:
        self.work.add(key)
        if key in self.parked and key not in self.queue:
            self.queue[key] = None
            self._schedule()

    def forget(self, key: Hashable) -> None:
        self.work.discard(key)
        self.queue.pop(key, None)

    async def take(self, key: Hashable) -> None:
        """Return at key's turn, once it has work."""
        turn = asyncio.get_running_loop().create_future()
        self.parked[key] = turn
        if key in self.work:
            self.queue[key] = None
            self._schedule()
        try:
            await turn
        finally:  # granted, or cancelled while waiting (the client is leaving)
            self.parked.pop(key, None)
            self.queue.pop(key, None)
        if self.pass_started is None:
            self.pass_started = self.clock()

    def _schedule(self) -> None:
        if not self.scheduled:
            self.scheduled = True
            # At the next pass: after the senders granted in this one, which run first
            # there, and before what this pass's socket events started.
            asyncio.get_running_loop().call_soon(self._grant)

    def _grant(self) -> None:
        """Grant this pass's turns; the previous pass's, if any, have just run."""
        self.scheduled = False
        if self.granted and self.pass_started is not None:
            spent = max(self.clock() - self.pass_started, 1e-6)
            self.per_pass = max(1, min(round(self.granted * self.slice_s / spent),
                                       self.MAX_PER_PASS))
        self.pass_started = None
        self.granted = min(self.per_pass, len(self.queue))
        for _ in range(self.granted):
            key = next(iter(self.queue))
            del self.queue[key]
            self.work.discard(key)
            self.parked.pop(key).set_result(None)
        if self.granted:
            self._schedule()  # to time these turns, and grant the next
