"""WS /ws: projection changes fanned out to live dashboards.

The hub listens to the projector. Each committed batch of the jobs model becomes one
update per changed task, appended to one ring shared by every subscriber; each client's
sender task walks the ring from its own position, sending what matches its filters.

Memory is bounded by the ring, whatever the number or speed of clients. A client that
falls behind skips the updates of a task that a newer update in the ring supersedes (its
updates coalesce); a client that falls further behind than the ring holds could not keep
up, and is closed with 1013 (it can resume from its last cursor).

Cursors. A cursor is the position in the jobs topic that an update reflects: one offset
per partition ("next offset": everything before it has been seen), plus the time it was
issued. The hub appends a batch's updates in log order within each partition and advances
its cursor update by update, so a client's latest cursor covers exactly what it has been
sent. On resume, the read model answers "which tasks changed at or after this cursor"
(jobs.last_offset is the offset of each task's latest change); the client's ring position
is taken before that query, and ring updates the backlog already covered are skipped.
Cursors point into the log, not into this process, so they survive restarts and work
against any API node that follows the same log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from websockets.frames import CloseCode

from jobledger.projections.jobs import JobState
from jobledger.projections.schedules import ScheduleState
from jobledger.schemas import JOBS, Envelope, JobStatus, Permission
from jobledger.schemas.api import WS_MAX_MESSAGE_BYTES, Progress, TaskUpdate, TaskView
from jobledger.schemas.common import iso_ms, to_ms
from jobledger.services.node.base import Node
from jobledger.services.runtime.projector import Projected
from jobledger.services.runtime.supervise import cancel_and_wait, spawn

from .openapi import Endpoint, Reply
from .schedules import schedule_updates
from .ws_wire import Batch, Outgoing, Turns, Wire

# Close codes (RFC 6455, 7.4.1), each with the reason the client is given
TRY_AGAIN_LATER = CloseCode.TRY_AGAIN_LATER  # 1013: it could not keep up
FELL_BEHIND = "fell behind the updates: reconnect and resume from your last cursor"
GOING_AWAY = CloseCode.GOING_AWAY  # 1001: the server stops
UNSUPPORTED_DATA = CloseCode.UNSUPPORTED_DATA  # 1003: a binary message
BINARY = "binary messages are not accepted: send JSON text"
# 1009 (a message over max_message_bytes) and 1007 (text that is not UTF-8) are sent by the
# server's protocol before a message reaches the hub (api/ws_protocol.py).
MAX_SHARED_BATCHES = 256  # of at most batch_bytes each: a few MB at worst
AUTHENTICATED = '{"type":"authenticated"}'  # the answer to an auth message (api/ws_auth.py)


@dataclass(frozen=True)
class HubConfig:
    # Updates kept for clients that are behind. Larger than the biggest projected batch
    # (the tail's 5,000 records), or a burst alone would drop every client.
    ring_size: int = 32_768
    stats_interval_s: float = 1.0  # at most one stats message per interval
    resume_window_s: float = 24 * 3600.0  # how old a cursor may be and still be resumed
    backlog_page: int = 500  # rows per read-model query while resuming
    # The largest message a client may send (its messages are under 1 KB); beyond it the
    # connection is closed with 1009. Set as uvicorn's ws_max_size (api/app.py).
    max_message_bytes: int = WS_MAX_MESSAGE_BYTES
    batch_bytes: int = 32 * 1024  # updates written to one client at once (api/ws_wire.py)
    # The fan-out's share of each pass of the event loop (api/ws_wire.py:Turns): a REST
    # request waits for at most this at each of its steps.
    fanout_slice_s: float = 0.004
    # How long a socket without a credential in its upgrade request has to send its first
    # message, {"type": "auth", "token": ...}, by the node's clock (api/ws_auth.py).
    auth_timeout_s: float = 5.0


class Filters(msgspec.Struct, forbid_unknown_fields=True):
    task_types: list[str] | None = None
    statuses: list[str] | None = None
    queues: list[str] | None = None


class ClientMessage(msgspec.Struct, forbid_unknown_fields=True):
    type: str  # subscribe | unsubscribe | ping | auth
    channel: str = "tasks"  # tasks | stats | schedules | task
    filters: Filters | None = None
    resume_from: str | None = None
    task_id: str | None = None  # channel task: the task whose changes to be told of
    token: str | None = None  # type auth: a credential (api/ws_auth.py); here, not needed


_encoder = msgspec.json.Encoder()
_client_message = msgspec.json.Decoder(ClientMessage)


def _text(message: Any) -> str:
    return _encoder.encode(message).decode()


def _outgoing(message: Any) -> Outgoing:
    return Outgoing(_encoder.encode(message))


# -- cursors ----------------------------------------------------------------------------------


class BadCursor(ValueError):
    pass


def format_cursor(time_ms: int, offsets: list[int]) -> str:
    return ".".join(map(str, (time_ms, *offsets)))


def parse_cursor(cursor: str, partitions: int) -> tuple[int, list[int]]:
    try:
        time_ms, *offsets = (int(part) for part in cursor.split("."))
    except ValueError:
        raise BadCursor(f"resume_from {cursor!r} is not a cursor this server issued") from None
    if len(offsets) != partitions or min(offsets, default=0) < 0:
        raise BadCursor(
            f"resume_from {cursor!r} names {len(offsets)} partitions; the log has {partitions}")
    return time_ms, offsets


# -- filters ----------------------------------------------------------------------------------


class BadFilter(ValueError):
    pass


_STATUSES = {status.casefold(): status for status in JobStatus}


def _checked(filters: Filters | None) -> Filters | None:
    """The filters with each status in its documented case (lowercase; any case is
    accepted, as on the REST filters). A status that is none raises BadFilter naming the
    valid ones: a filter that can never match is a mistake, not an empty subscription."""
    if filters is None or filters.statuses is None:
        return filters
    statuses = []
    for given in filters.statuses:
        status = _STATUSES.get(given.casefold())
        if status is None:
            raise BadFilter(f"filters.statuses: {given!r} is not a task status; one of: "
                            f"{', '.join(JobStatus)} (in any case)")
        statuses.append(status.value)
    return msgspec.structs.replace(filters, statuses=statuses)


# -- the ring of updates ----------------------------------------------------------------------


@dataclass(slots=True)
class _Update:
    seq: int
    job_id: str
    partition: int
    offset: int
    view: TaskView
    cursor: str
    out: Outgoing | None = None  # encoded on first send, once for every client

    def message(self) -> Outgoing:
        if self.out is None:
            self.out = _outgoing(TaskUpdate(self.cursor, self.view))
        return self.out


class _Ring:
    def __init__(self, size: int):
        self.size = size
        self.slots: list[_Update | None] = []
        self.next_seq = 0
        self.latest: dict[str, int] = {}  # job id -> seq of its newest update in the ring

    def append(self, job_id: str, partition: int, offset: int, view: TaskView, cursor: str) -> None:
        seq = self.next_seq
        update = _Update(seq, job_id, partition, offset, view, cursor)
        if len(self.slots) < self.size:
            self.slots.append(update)
        else:
            old = self.slots[seq % self.size]
            if old is not None and self.latest.get(old.job_id) == old.seq:
                del self.latest[old.job_id]
            self.slots[seq % self.size] = update
        self.latest[job_id] = seq
        self.next_seq = seq + 1

    def get(self, seq: int) -> _Update | None:
        """The update at seq, or None when the ring has moved past it."""
        if seq < self.next_seq - self.size:
            return None
        return self.slots[seq % self.size]

    def superseded(self, update: _Update) -> bool:
        return self.latest.get(update.job_id, -1) > update.seq


# -- one subscriber ---------------------------------------------------------------------------


class _Match:
    """A subscription's filters as sets; None matches everything."""

    def __init__(self, filters: Filters | None):
        f = filters or Filters()
        self.task_types = frozenset(f.task_types) if f.task_types is not None else None
        self.statuses = frozenset(f.statuses) if f.statuses is not None else None
        self.queues = frozenset(f.queues) if f.queues is not None else None
        self.key = (self.task_types, self.statuses, self.queues)  # equal filters, equal keys

    def __call__(self, task: TaskView) -> bool:
        return (
            (self.task_types is None or task.task_type in self.task_types)
            and (self.statuses is None or task.status in self.statuses)
            and (self.queues is None or task.queue in self.queues)
        )


@dataclass(frozen=True)
class Resume:
    filters: Filters | None
    offsets: list[int]
    time_ms: int


@dataclass(eq=False)
class Client:
    """One connection. Only its sender task writes to the socket."""

    websocket: WebSocket
    wire: Wire
    match: _Match | None = None  # subscribed to tasks when set
    next_seq: int = 0  # its position in the ring
    stats: bool = False
    schedules: bool = False
    task: str | None = None  # channel task: the task id it watches
    resume: Resume | None = None  # a backlog the sender has yet to send
    skip_below: list[int] | None = None  # offsets per partition a backlog covered
    # Messages of its own (pong, stats, errors), one per kind: a newer replaces an older.
    control: OrderedDict[str, str] = field(default_factory=OrderedDict)
    control_at: int = 0  # they go once it has been sent the ring up to here
    sender: asyncio.Task[None] | None = None
    dropped: bool = False  # fell behind the ring: being closed with 1013


# -- the hub ----------------------------------------------------------------------------------


class Hub:
    """Serves any node with projections (an EmbeddedNode, or a KafkaNode with the API role):
    it reads only what the `Node` protocol has (backend, projector, queries, clock)."""

    def __init__(self, node: Node, config: HubConfig | None = None):
        self.node = node
        self.config = config or HubConfig()
        self.clients: set[Client] = set()
        self.partitions = node.backend.topic(JOBS).partitions
        done = node.projector.positions["jobs"]
        self.position = [done.get(p, 0) for p in range(self.partitions)]
        self.ring = _Ring(self.config.ring_size)
        self.turns = Turns(self.config.fanout_slice_s)
        # Batches made for the ring as it is, by (filters, backlog's end, first seq): the
        # clients at one place with one subscription are sent the same bytes, made once.
        self.batches: dict[tuple[object, ...], tuple[Batch, int]] = {}
        self._stats_dirty = asyncio.Event()
        self._stats_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.node.projector.listeners.append(self.on_projected)
        self.node.projector.schedule_listeners.append(self.on_schedules)
        self.node.projector.model_listeners.append(self.on_model)
        self._stats_task = spawn(self._push_stats(), "ws-stats")

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.node.projector.listeners.remove(self.on_projected)
            self.node.projector.schedule_listeners.remove(self.on_schedules)
            self.node.projector.model_listeners.remove(self.on_model)
        await cancel_and_wait(self._stats_task)
        for client in list(self.clients):
            await _close(client.websocket, GOING_AWAY)

    def cursor(self) -> str:
        return format_cursor(to_ms(self.node.clock.now()), self.position)

    def on_projected(self, projected: Projected) -> None:
        """Called by the projector after each committed jobs batch."""
        self._stats_dirty.set()
        change = projected.change
        if not change.jobs:
            return
        self._tell_watchers(change.jobs)
        position = self.position
        now_ms = to_ms(self.node.clock.now())
        listening = any(c.match is not None for c in self.clients)
        # Log order within each partition, so each update's cursor covers what came before.
        for (partition, offset), job_id in sorted((change.positions[j], j) for j in change.jobs):
            position[partition] = offset + 1
            if listening:
                self.ring.append(job_id, partition, offset, task_view(change.jobs[job_id]),
                                 format_cursor(now_ms, position))
        self.batches.clear()  # made for a shorter ring
        floor = self.ring.next_seq - self.ring.size
        for client in self.clients:
            if client.match is None:
                continue
            if client.next_seq < floor and not client.dropped:
                # Its sender may be stuck on a socket the client does not read: close from here.
                client.dropped = True
                spawn(self._drop(client, TRY_AGAIN_LATER, FELL_BEHIND), "ws-drop")
            self.turns.ready(client)

    def _tell(self, client: Client, kind: str, text: str) -> None:
        """Send the client a message of its own, after the updates it is due now."""
        if not client.control:
            client.control_at = self.ring.next_seq
        client.control.pop(kind, None)
        client.control[kind] = text
        self.turns.ready(client)

    async def _drop(self, client: Client, code: int, reason: str) -> None:
        """Close the connection from outside its sender, stopping the sender first (the
        only writer of the socket, it may be stuck on a client that does not read)."""
        if client.sender is not None:
            client.sender.cancel()
            await asyncio.gather(client.sender, return_exceptions=True)
        await _close(client.websocket, code, reason)

    def on_model(self, model: str, envs: list[Envelope]) -> None:
        """Called by the projector after each committed batch of the other models."""
        if model == "workers":
            self._stats_dirty.set()  # a worker lost or started changes the stats
        elif model == "run_logs":
            self._tell_watchers({getattr(env.event, "job_id", None) for env in envs})

    def _tell_watchers(self, job_ids: Collection[str | None]) -> None:
        """Tell each client watching one of these tasks (channel task) that it changed.
        The message carries no state: the page reads the task again, so nothing can be
        lost between two messages, and a newer message replaces one not yet sent."""
        for client in self.clients:
            if client.task is not None and client.task in job_ids:
                self._tell(client, "task",
                           _text({"type": "task_changed", "task_id": client.task}))

    def on_schedules(self, changed: list[ScheduleState]) -> None:
        """Called by the projector after each committed schedules batch."""
        if any(c.schedules for c in self.clients):
            spawn(self._push_schedules(changed), "ws-schedules")

    async def _push_schedules(self, changed: list[ScheduleState]) -> None:
        for message in await schedule_updates(self.node.queries, changed):
            text = _text(message)
            key = f"schedule:{message['schedule']['id']}"  # type: ignore[index]  # a dict: the view's JSON
            for client in self.clients:
                if client.schedules:
                    self._tell(client, key, text)  # a newer state of a schedule replaces the older

    async def _push_stats(self) -> None:
        while True:
            await self._stats_dirty.wait()
            self._stats_dirty.clear()
            listeners = [c for c in self.clients if c.stats]
            if listeners:
                text = await self._stats_text()
                for client in listeners:
                    self._tell(client, "stats", text)
            await asyncio.sleep(self.config.stats_interval_s)  # the rate limit, not a poll

    async def _stats_text(self) -> str:
        stats = await self.node.queries.stats(to_ms(self.node.clock.now()))
        return _text({"type": "stats", **msgspec.structs.asdict(stats)})

    # -- one connection -----------------------------------------------------------------------

    async def serve(self, websocket: WebSocket, wire: Wire,
                    admit: Callable[[WebSocket], Awaitable[bool]] | None = None) -> None:
        """One connection, from its handshake until it leaves. `admit` (api/ws_auth.py)
        says who it is between the accept and the join, and closes it if it may not join:
        nothing is sent to it before."""
        await websocket.accept()
        if admit is not None and not await admit(websocket):
            return
        client = self._join(websocket, wire)
        try:
            await self._listen(client)
        finally:
            self.clients.discard(client)
            self.turns.forget(client)
            if client.sender is not None:
                client.sender.cancel()
                await asyncio.gather(client.sender, return_exceptions=True)

    def _join(self, websocket: WebSocket, wire: Wire) -> Client:
        client = Client(websocket, wire, next_seq=self.ring.next_seq)
        self.clients.add(client)
        client.sender = spawn(self._send(client), "ws-send")
        return client

    async def _listen(self, client: Client) -> None:
        """Handle the client's messages until it leaves or is closed. A binary message is
        closed with 1003: the protocol is JSON text."""
        assert client.sender is not None
        while not client.sender.done():
            message = await client.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                await self._drop(client, UNSUPPORTED_DATA, BINARY)
                return
            await self._handle(client, text)

    async def _handle(self, client: Client, raw: str) -> None:
        try:
            message = _client_message.decode(raw)
        except msgspec.DecodeError as exc:
            self._tell(client, "error", _error(f"bad message: {exc}", "INVALID_MESSAGE"))
            return
        match message.type, message.channel:
            case "ping", _:
                self._tell(client, "pong", '{"type":"pong"}')
            case "auth", _:  # auth off, or once more: a browser need not know (ws_auth.py)
                self._tell(client, "authenticated", AUTHENTICATED)
            case "subscribe", "stats":
                client.stats = True
                self._tell(client, "stats", await self._stats_text())
            case "unsubscribe", "stats":
                client.stats = False
            case "subscribe", "schedules":
                client.schedules = True
                self._tell(client, "subscribed:schedules",
                           '{"type":"subscribed","channel":"schedules"}')
            case "unsubscribe", "schedules":
                client.schedules = False
            case "subscribe", "tasks":
                await self._subscribe(client, message)
            case "unsubscribe", "tasks":
                client.match = None
            case "subscribe", "task":
                self._watch(client, message.task_id)
            case "unsubscribe", "task":
                client.task = None
            case _:
                self._tell(client, "error", _error(
                    f"unknown message type {message.type!r} on channel {message.channel!r}",
                    "INVALID_MESSAGE"))

    def _watch(self, client: Client, task_id: str | None) -> None:
        if not task_id:
            self._tell(client, "error",
                       _error("channel task needs a task_id", "INVALID_MESSAGE"))
            return
        client.task = task_id  # one task per connection: a new subscribe replaces it
        self._tell(client, "subscribed:task",
                   _text({"type": "subscribed", "channel": "task", "task_id": task_id}))

    async def _subscribe(self, client: Client, message: ClientMessage) -> None:
        try:
            filters = _checked(message.filters)
        except BadFilter as exc:
            self._tell(client, "error", _error(str(exc), "INVALID_FILTER"))
            return  # the socket stays open, with the subscription it had
        client.skip_below = None
        if message.resume_from is None:
            client.next_seq = self.ring.next_seq
            client.match = _Match(filters)
            # Each channel's acknowledgement is a kind of its own: one channel's would
            # replace another's still unsent (a page subscribes to several at once).
            self._tell(client, "subscribed:tasks",
                       _text({"type": "subscribed", "cursor": self.cursor()}))
            return
        try:
            time_ms, offsets = parse_cursor(message.resume_from, self.partitions)
        except BadCursor as exc:
            self._tell(client, "error", _error(str(exc), "INVALID_CURSOR"))
            return
        if not await self._resumable(time_ms, offsets):
            self._tell(client, "resync", '{"type":"resync_required"}')
            return
        # The ring position is taken before the backlog is read: what commits in between
        # is in the ring, and the backlog's share of it is skipped.
        client.next_seq = self.ring.next_seq
        client.match = _Match(filters)
        client.resume = Resume(filters, offsets, time_ms)
        self.turns.ready(client)

    async def _resumable(self, time_ms: int, offsets: list[int]) -> bool:
        """A cursor older than the window, or past the end of this log (another log's), is
        not resumed: the client must fetch the current state instead."""
        age_s = (to_ms(self.node.clock.now()) - time_ms) / 1000
        if age_s > self.config.resume_window_s:
            return False
        ends = await self.node.backend.topic(JOBS).end_offsets()
        return all(offset <= ends.get(p, 0) for p, offset in enumerate(offsets))

    async def _send(self, client: Client) -> None:
        """The only writer of the client's socket: a batch at each of its turns."""
        try:
            while True:
                await self.turns.take(client)
                if not await self._turn(client):
                    client.dropped = True
                    await _close(client.websocket, TRY_AGAIN_LATER, FELL_BEHIND)
                    return
                if (client.resume is not None or client.control
                        or client.next_seq < self.ring.next_seq):
                    self.turns.ready(client)
        except (WebSocketDisconnect, RuntimeError, OSError):
            return

    async def _turn(self, client: Client) -> bool:
        """One batch: the backlog of a resume, or its own messages once it has been sent
        the updates they follow, or its next updates from the ring. False if it fell off
        the ring."""
        if client.match is None:
            client.next_seq = self.ring.next_seq  # not subscribed: nothing of the ring is due
        if client.resume is not None:
            client.skip_below = await self._send_backlog(client, client.resume)
            client.resume = None
        elif client.control and client.next_seq >= client.control_at:
            own = Batch([Outgoing(text.encode()) for text in client.control.values()])
            client.control.clear()
            await client.wire.send(own)
        elif client.next_seq < self.ring.next_seq:
            updates = self._shared_batch(client)
            if updates is None:
                return False
            if updates.messages:
                await client.wire.send(updates)
        return True

    def _shared_batch(self, client: Client) -> Batch | None:
        """_next_batch, made once for every client at the same place with the same filters
        (while the ring stays as it is): making each client's was most of the fan-out's
        CPU (docs/performance.md, "Figures behind the code")."""
        if client.control or client.match is None:  # it stops early, or sends nothing
            return self._next_batch(client)
        skip = tuple(client.skip_below) if client.skip_below is not None else None
        key = (client.match.key, skip, client.next_seq)
        made = self.batches.get(key)
        if made is None:
            batch = self._next_batch(client)
            if batch is None:
                return None
            if len(self.batches) >= MAX_SHARED_BATCHES:
                self.batches.clear()
            self.batches[key] = made = (batch, client.next_seq)
        client.next_seq = made[1]
        return made[0]

    def _next_batch(self, client: Client) -> Batch | None:
        """The client's next updates from the ring, up to batch_bytes of them (superseded
        ones and those its filters or its backlog exclude skipped); None if the ring has
        moved past it."""
        ring, end, limit = self.ring, self.ring.next_seq, self.config.batch_bytes
        if client.control:  # they are due at control_at: stop there
            end = min(end, client.control_at)
        match, skip = client.match, client.skip_below
        batch: list[Outgoing] = []
        size = 0
        while client.next_seq < end and size < limit:
            update = ring.get(client.next_seq)
            if update is None:
                return None
            client.next_seq += 1
            if (match is None or ring.superseded(update) or not match(update.view)
                    or (skip is not None and update.offset < skip[update.partition])):
                continue
            message = update.message()
            batch.append(message)
            size += message.size
        return Batch(batch)

    async def _send_backlog(self, client: Client, resume: Resume) -> list[int]:
        """Every matching task changed at or after the cursor, in log order per partition,
        a page a write; the cursor it reached."""
        cursor = list(resume.offsets)
        page = self.config.backlog_page
        for partition in range(self.partitions):
            rows = None
            while rows is None or len(rows) == page:
                rows = await self.node.queries.changed_since(
                    partition, cursor[partition], resume.filters, page)
                batch = []
                for view, offset in rows:
                    cursor[partition] = offset + 1
                    batch.append(_outgoing(TaskUpdate(format_cursor(resume.time_ms, cursor), view)))
                if batch:
                    await client.wire.send(Batch(batch))
        return cursor


endpoints = [
    Endpoint(
        "GET", "/ws", None, "Live task updates and stats over a WebSocket", tag="live",
        operation_id="websocket", replies={101: Reply("switching to the WebSocket protocol")},
        errors={426: "a plain HTTP request, not a WebSocket upgrade"},
        description=(
            "Send {\"type\": \"subscribe\", \"filters\": {\"task_types\", \"statuses\","
            " \"queues\"}, \"resume_from\": cursor?} for task_update messages (each with its"
            " cursor), {\"type\": \"subscribe\", \"channel\": \"stats\"} for stats at most once"
            " a second, {\"type\": \"subscribe\", \"channel\": \"schedules\"} for schedule_update"
            " messages, \"unsubscribe\" and \"ping\". A cursor too old to resume gets"
            " {\"type\": \"resync_required\"}; a client that cannot keep up is closed with"
            " 1013. Messages are JSON text: a binary one is closed with 1003, one over the"
            " limit (64 KiB by default) with 1009, text that is not UTF-8 with 1007. With"
            " auth on, a key with read_tasks is needed: in the upgrade's `Authorization:"
            " Bearer <key>`, or as the first message {\"type\": \"auth\", \"token\":"
            " key} within 5 s; without it the socket is closed with 1008 and the reason,"
            " before any data. With auth off, a browser page of a foreign Origin is closed"
            " with 1008. See docs/api.md and docs/security.md."
        ),
        access=Permission.READ_TASKS,
    ),
]


def task_view(job: JobState) -> TaskView:
    return TaskView(
        task_id=job.job_id, task_type=job.task_type, queue=job.queue, status=job.status,
        updated_at=iso_ms(job.updated_at) or "", retry_count=job.retry_count,
        progress=Progress(processed=job.processed, total=job.total, failed=job.failed),
        priority=job.priority, created_at=iso_ms(job.created_at) or "",
    )


def _error(message: str, code: str) -> str:
    return _text({"type": "error", "error": message, "code": code})


async def _close(websocket: WebSocket, code: int, reason: str = "") -> None:
    if websocket.application_state == WebSocketState.CONNECTED:
        with contextlib.suppress(RuntimeError, OSError):
            await websocket.close(code, reason)
