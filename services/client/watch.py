"""Client.watch(): task updates over WS /ws that survive a dropped connection.

The server gives each update a cursor, a position in the log covering that update and
every one before it (docs/api.md, "Live updates"). Watch keeps the last one it handed out;
when the socket closes for any reason (the server restarted or was killed, it closed a
client too slow for it with 1013, the network dropped) it connects again and subscribes
with `resume_from` that cursor: the server sends every matching task changed since, then
live updates. So an update is missed only if the server says it cannot resume
(ResyncRequired), never silently.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import aiohttp
import msgspec

from jobledger.schemas.api import TaskUpdate
from jobledger.services.client.errors import (
    InvalidArgument,
    ResyncRequired,
    ServerUnreachable,
    Unauthorized,
)

if TYPE_CHECKING:
    from jobledger.services.client.async_client import Client

# Seconds between connection attempts: doubling from the first to the cap.
FIRST_PAUSE, MAX_PAUSE = 0.1, 2.0
POLICY_VIOLATION = 1008  # the server's close code for a socket without a valid credential


class Subscribed(msgspec.Struct, tag="subscribed", tag_field="type"):
    cursor: str | None = None


class Resync(msgspec.Struct, tag="resync_required", tag_field="type"):
    pass


class Refused(msgspec.Struct, tag="error", tag_field="type"):
    error: str
    code: str


_message = msgspec.json.Decoder(TaskUpdate | Subscribed | Resync | Refused)
_encoder = msgspec.json.Encoder()


class Watch:
    """An async iterator of TaskUpdate (see Client.watch). `cursor`: the position of the last
    update handed out (or of the subscription, before any): give it as resume_from to go on
    from there later. `async with` subscribes on entry (an update from then on is not
    missed) and drops the connection on exit; iterating without it subscribes at the first
    step."""

    def __init__(self, client: Client, task_types: Iterable[str] | None,
                 statuses: Iterable[str] | None, queues: Iterable[str] | None,
                 resume_from: str | None, reconnect_for: float):
        self.client = client
        self.cursor = resume_from
        self.reconnect_for = reconnect_for
        self.filters = {name: list(values) for name, values in (
            ("task_types", task_types), ("statuses", statuses), ("queues", queues))
            if values is not None}
        self._socket: aiohttp.ClientWebSocketResponse | None = None
        self._early: deque[TaskUpdate] = deque()  # came before the subscription's answer

    def __aiter__(self) -> Watch:
        return self

    async def __aenter__(self) -> Watch:
        await self.subscribe()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._socket is not None:
            await self._socket.close()
            self._socket = None

    async def subscribe(self) -> None:
        """Connect and subscribe, if not yet. A fresh subscription waits for the server's
        answer, whose cursor is then `cursor`."""
        if self._socket is not None:
            return
        socket = await self._connect()
        try:
            while self.cursor is None:
                message = await self._next_message(socket)
                if message is None:
                    return  # dropped already: the next step connects again
                if isinstance(message, TaskUpdate):
                    self._early.append(message)
                elif isinstance(message, Subscribed):
                    self.cursor = message.cursor
        except BaseException:  # refused (a bad filter), or cancelled: no socket left open
            await self.close()
            raise

    async def __anext__(self) -> TaskUpdate:
        while not self._early:
            if self._socket is None:
                await self.subscribe()
                continue
            message = await self._next_message(self._socket)
            if isinstance(message, TaskUpdate):
                self._early.append(message)
        update = self._early.popleft()
        self.cursor = update.cursor
        return update

    async def _next_message(self, socket: aiohttp.ClientWebSocketResponse,
                            ) -> TaskUpdate | Subscribed | None:
        """The next update or subscription answer; None when the socket closed (and is
        dropped, to be connected again from the cursor)."""
        while True:
            frame = await socket.receive()
            if frame.type != aiohttp.WSMsgType.TEXT:
                await socket.close()  # closed or broken: connect again, from the cursor
                self._socket = None
                return None
            message = _read(frame.data, self.cursor)
            if message is not None:
                return message

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        self._socket = await connect(self.client, self.reconnect_for, self._open)
        return self._socket

    async def _open(self) -> aiohttp.ClientWebSocketResponse:
        socket = await self.client.http().ws_connect(ws_url(self.client), autoping=True)
        subscribe: dict[str, Any] = {"type": "subscribe", "filters": self.filters}
        if self.cursor is not None:
            subscribe["resume_from"] = self.cursor
        await socket.send_str(_encoder.encode(subscribe).decode())
        return socket


def ws_url(client: Client) -> str:
    return client.base_url.replace("http", "ws", 1) + "/ws"


async def connect(client: Client, reconnect_for: float,
                  open_socket: Callable[[], Awaitable[aiohttp.ClientWebSocketResponse]],
                  ) -> aiohttp.ClientWebSocketResponse:
    """A socket from open_socket, trying again (a pause doubling up to MAX_PAUSE) until
    reconnect_for seconds have passed without one; ServerUnreachable then."""
    give_up, pause = time.monotonic() + reconnect_for, FIRST_PAUSE
    while True:
        try:
            return await open_socket()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            if time.monotonic() + pause > give_up:
                reason = str(exc) or type(exc).__name__
                raise ServerUnreachable(f"WS {ws_url(client)}: {reason} (for "
                                        f"{reconnect_for:g} s)") from exc
        await asyncio.sleep(pause)
        pause = min(pause * 2, MAX_PAUSE)


async def task_signals(client: Client, task_id: str,
                       reconnect_for: float = 60.0) -> AsyncGenerator[None, None]:
    """Yields each time the task may have changed (its state, a run, a log line): once
    subscribed to WS /ws's channel `task`, then at each `task_changed`. The messages carry
    no state, so the caller reads the task again at each step; after a dropped connection
    it subscribes again and yields once more, which covers any change meanwhile."""

    async def open_socket() -> aiohttp.ClientWebSocketResponse:
        socket = await client.http().ws_connect(ws_url(client), autoping=True)
        await socket.send_str(_encoder.encode(
            {"type": "subscribe", "channel": "task", "task_id": task_id}).decode())
        return socket

    while True:
        socket = await connect(client, reconnect_for, open_socket)
        subscribed = False
        try:
            async for frame in socket:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    break
                kind = msgspec.json.decode(frame.data).get("type")
                subscribed = subscribed or kind == "subscribed"
                if kind in ("subscribed", "task_changed"):
                    yield None
        finally:
            await socket.close()
        if not subscribed:  # refused before it subscribed: not a drop to resume from
            _refused(socket)
            await asyncio.sleep(FIRST_PAUSE)


def _refused(socket: aiohttp.ClientWebSocketResponse) -> None:
    """Raise Unauthorized for a socket the server closed with 1008 (no or a wrong key)."""
    if socket.close_code == POLICY_VIOLATION:
        raise Unauthorized(401, {"error": "WS /ws closed with 1008: the API key is missing, "
                                 "wrong, or lacks read_tasks", "code": "UNAUTHORIZED"})


def _read(text: str, cursor: str | None) -> TaskUpdate | Subscribed | None:
    """An update or a subscription's answer; None for a message of another kind. The
    server's refusals raise: ResyncRequired, or InvalidArgument for a bad filter."""
    try:
        message: TaskUpdate | Subscribed | Resync | Refused = _message.decode(text)
    except msgspec.ValidationError:
        return None  # a message of a kind this client does not ask for
    if isinstance(message, Resync):
        raise ResyncRequired(cursor)
    if isinstance(message, Refused):
        raise InvalidArgument(400, {"error": message.error, "code": message.code,
                                    "field": _field_of(message.error)})
    return message


def _field_of(error: str) -> str | None:
    """'filters.statuses: ...' -> 'statuses'."""
    head = error.split(":", 1)[0]
    return head.removeprefix("filters.") if head.startswith("filters.") else None
