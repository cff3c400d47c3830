"""The Python client: talks to a jobledger server over its REST API and its WebSocket.

    async with Client("http://127.0.0.1:8080") as client:
        task_id = await client.submit("send_email", {"to": "a@example.com"})
        task = await client.wait(task_id)          # a TaskDetail
        async for summary in client.list(status="pending"):
            ...

Answers are the server's own msgspec Structs (schemas/api.py, schemas/schedules.py),
decoded straight from the JSON; JSON values the caller gave (payload, result, log
details) come back as Python values. Refusals are typed exceptions (errors.py).

Arguments of an enqueue are validated here with the server's own rules, so a bad one fails
before any request is sent, with the same message naming the field.

HTTP goes through aiohttp: one keep-alive session per Client. httpx's AsyncClient took
more time a request than the server itself, one request at a time (docs/performance.md,
"Figures behind the code"). SyncClient (sync_client.py) runs this class on a loop of its
own, so every behaviour here (retries, paging, waiting, watching) exists once.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
import msgspec
from opentelemetry.trace import Tracer

from jobledger.schemas.api import (
    HIGHEST_MAX_PAYLOAD_DEPTH,
    MAX_BATCH,
    BatchCreated,
    BatchRequest,
    ClusterInfo,
    Health,
    HistoryEntry,
    QueueInfo,
    QueueToggled,
    RunDetail,
    RunLog,
    RunSummary,
    Stats,
    TaskCreated,
    TaskDetail,
    TaskRequest,
    TaskSummary,
    WorkerInfo,
)
from jobledger.schemas.lifecycle import TERMINAL
from jobledger.schemas.schedules import ScheduleView, Triggered
from jobledger.schemas.security import KeyView, NewKey, Token, UserView
from jobledger.services.client.errors import (
    ClientError,
    RateLimited,
    ServerUnreachable,
    WaitTimeout,
    error_of,
)
from jobledger.services.client.watch import Watch, task_signals
from jobledger.services.schedules.commands import definition_of, parse_request
from jobledger.services.telemetry.spans import answered, client_span, global_tracer
from jobledger.services.write.commands import CancelOutcome
from jobledger.services.write.producer import task_request

__all__ = ["Client", "ClientError", "ServerUnreachable", "WaitTimeout", "base_url_of"]

T = TypeVar("T")
_encoder = msgspec.json.Encoder()
_JSON = {"content-type": "application/json"}
# Seconds between tries of a 429 that names no Retry-After: doubling, at most the cap.
_FIRST_PAUSE, _MAX_PAUSE = 0.5, 10.0


_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}


def _decoder(shape: Any) -> msgspec.json.Decoder[Any]:
    """The decoder of one answer shape, made once."""
    decoder = _DECODERS.get(shape)
    if decoder is None:
        decoder = _DECODERS[shape] = msgspec.json.Decoder(shape)
    return decoder


def base_url_of(address: str) -> str:
    """The server's base URL; http:// is assumed when the address has no scheme, as in
    `127.0.0.1:8080` (aiohttp would otherwise fail on it with a bare InvalidURL)."""
    address = address.strip().rstrip("/")
    return address if "://" in address else f"http://{address}"


class Client:
    """One server. `timeout`: seconds a request may take. `api_key`: sent as
    `Authorization: Bearer <key>` (a server with auth on needs one; docs/security.md).
    `rate_limit_wait`: the most seconds one call spends
    waiting out 429 answers (as long as each Retry-After says, else 0.5 s doubling) before
    it raises RateLimited; 0 raises at the first."""

    def __init__(self, base_url: str = "http://127.0.0.1:8080", timeout: float = 30.0,
                 api_key: str | None = None, *, rate_limit_wait: float = 30.0,
                 tracer: Tracer | None = None):
        """`tracer`: makes a CLIENT span of each request, its context sent as `traceparent`
        (a task's trace then starts here: docs/observability.md); by default the global
        provider's, when an OpenTelemetry SDK is installed, else none."""
        self.base_url = base_url_of(base_url)
        self.tracer = tracer or global_tracer("jobledger.client")
        self.timeout = timeout
        self.rate_limit_wait = rate_limit_wait
        self.headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._session: aiohttp.ClientSession | None = None  # made in the running loop

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def http(self) -> aiohttp.ClientSession:
        """The keep-alive session (made on first use, in the loop that uses it)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout), raise_for_status=False,
                headers=self.headers)
        return self._session

    # -- requests -----------------------------------------------------------------------------

    async def _send(self, method: str, path: str, body: bytes | None,
                    query: Mapping[str, Any] | None) -> tuple[int, bytes, str | None]:
        """One request: (status, body, Retry-After); ServerUnreachable when no answer."""
        if self.tracer is None:
            return await self._send_once(method, path, body, query, _JSON if body else None)
        with client_span(self.tracer, method, self.base_url + path) as (span, traced):
            answer = await self._send_once(method, path, body, query,
                                           {**_JSON, **traced} if body else traced)
            answered(span, answer[0])
            return answer

    async def _send_once(self, method: str, path: str, body: bytes | None,
                         query: Mapping[str, Any] | None,
                         headers: Mapping[str, str] | None) -> tuple[int, bytes, str | None]:
        url = self.base_url + path
        params = {k: str(v) for k, v in query.items() if v is not None} if query else None
        try:
            async with self.http().request(method, url, data=body, params=params,
                                           headers=headers) as answer:
                return answer.status, await answer.read(), answer.headers.get("Retry-After")
        except aiohttp.ClientError as exc:
            # str() of some aiohttp errors is empty: the class name then says what happened.
            reason = str(exc) or type(exc).__name__
            raise ServerUnreachable(f"{method} {url}: {reason}") from exc
        except TimeoutError:
            raise ServerUnreachable(
                f"{method} {url}: no answer within {self.timeout:g} s") from None

    async def _request(self, method: str, path: str, body: bytes | None = None,
                       query: Mapping[str, Any] | None = None,
                       accept: frozenset[int] = frozenset()) -> tuple[int, bytes]:
        """(status, body) of a success (or of a status in `accept`); the error an answer
        stands for else, after waiting out 429s within rate_limit_wait."""
        waited, pause = 0.0, _FIRST_PAUSE
        while True:
            status, data, retry_after = await self._send(method, path, body, query)
            if status < 400 or status in accept:
                return status, data
            error = error_of(status, _error_body(data), retry_after)
            if not isinstance(error, RateLimited):
                raise error
            wait = pause if error.retry_after is None else error.retry_after
            if waited + wait > self.rate_limit_wait:
                raise error
            await asyncio.sleep(wait)
            waited, pause = waited + wait, min(pause * 2, _MAX_PAUSE)

    async def _call(self, shape: type[T], method: str, path: str, body: bytes | None = None,
                    query: Mapping[str, Any] | None = None) -> T:
        """The answer decoded as `shape`."""
        _, data = await self._request(method, path, body, query)
        return _decoder(shape).decode(data)  # type: ignore[no-any-return]

    # -- tasks --------------------------------------------------------------------------------

    async def submit(self, /, task_type: str, payload: Any = None, **options: Any) -> str:
        """Enqueue one task; returns its id (the existing one for a known idempotency_key).
        The options are the fields of TaskRequest: priority, schedule_at, delay_seconds,
        timeout_seconds, max_retries, idempotency_key, queue."""
        request = task_request(task_type, payload, **options)
        created = await self._call(TaskCreated, "POST", "/api/v1/tasks", _encoder.encode(request))
        return created.task_id

    async def submit_batch(self, tasks: Iterable[TaskRequest]) -> BatchCreated:
        """Enqueue up to MAX_BATCH tasks in one request, all or none (build them with
        task_request); the ids in order, and which named an existing task by their key."""
        body = _encoder.encode(BatchRequest(tasks=builtins.list(tasks)))
        return await self._call(BatchCreated, "POST", "/api/v1/tasks/batch", body)

    async def submit_many(self, tasks: Iterable[TaskRequest]) -> builtins.list[str]:
        """Enqueue any number of tasks, MAX_BATCH per request, each request all-or-nothing;
        their ids in order."""
        tasks = builtins.list(tasks)
        ids: builtins.list[str] = []
        for i in range(0, len(tasks), MAX_BATCH):
            ids.extend((await self.submit_batch(tasks[i : i + MAX_BATCH])).task_ids)
        return ids

    async def get(self, task_id: str, *, as_of: AsOf = None) -> TaskDetail:
        """The task; with as_of (a time, or a log position as the X-As-Of-Position header
        gives it), as it was then (docs/api.md, "Point in time")."""
        return await self._call(TaskDetail, "GET", f"/api/v1/tasks/{task_id}",
                                query=_as_of(as_of))

    async def cancel(self, task_id: str) -> CancelOutcome:
        """CANCELLED (it was waiting), or REQUESTED (it runs; its handler is asked to stop)."""
        status, _ = await self._request("POST", f"/api/v1/tasks/{task_id}/cancel")
        return CancelOutcome.CANCELLED if status == 204 else CancelOutcome.REQUESTED

    async def requeue(self, task_id: str) -> TaskCreated:
        """Start a finished task over: pending again, with a fresh retry budget."""
        return await self._call(TaskCreated, "POST", f"/api/v1/tasks/{task_id}/requeue")

    async def history(self, task_id: str) -> builtins.list[HistoryEntry]:
        """The task's events in log order: its audit trail."""
        return await self._call(builtins.list[HistoryEntry], "GET",
                                f"/api/v1/tasks/{task_id}/history")

    async def causes(self, event_id: str) -> builtins.list[HistoryEntry]:
        """The job event, then its cause, its cause's cause... back to its origin."""
        return await self._call(builtins.list[HistoryEntry], "GET",
                                f"/api/v1/events/{event_id}/causes")

    async def runs(self, task_id: str) -> builtins.list[RunSummary]:
        """The task's runs, one per attempt, in attempt order."""
        return await self._call(builtins.list[RunSummary], "GET", f"/api/v1/tasks/{task_id}/runs")

    async def list_runs(self, task_type: str | None = None, status: str | None = None,
                        limit: int = 100) -> builtins.list[RunSummary]:
        """Runs of every task, newest start first."""
        query = {"task_type": task_type, "status": status, "limit": limit}
        return await self._call(builtins.list[RunSummary], "GET", "/api/v1/runs", query=query)

    async def run(self, run_id: str) -> RunDetail:
        """One run (`<task_id>.<attempt>`) with its stack and log lines."""
        return await self._call(RunDetail, "GET", f"/api/v1/runs/{run_id}")

    async def logs(self, task_id: str, attempt: int | None = None) -> builtins.list[RunLog]:
        """The log lines of one attempt of the task, the latest by default ([] before its
        first run)."""
        if attempt is None:
            attempt = (await self.get(task_id)).attempt
            if attempt == 0:
                return []
        return (await self.run(f"{task_id}.{attempt}")).logs

    # -- the system ---------------------------------------------------------------------------

    async def stats(self, *, as_of: AsOf = None) -> Stats:
        """The stats; with as_of, as they were then."""
        return await self._call(Stats, "GET", "/api/v1/stats", query=_as_of(as_of))

    async def workers(self) -> builtins.list[WorkerInfo]:
        return await self._call(builtins.list[WorkerInfo], "GET", "/api/v1/workers")

    async def queues(self, *, as_of: AsOf = None) -> builtins.list[QueueInfo]:
        """The queues; with as_of, as they were then."""
        return await self._call(builtins.list[QueueInfo], "GET", "/api/v1/queues",
                                query=_as_of(as_of))

    async def pause_queue(self, queue: str) -> QueueToggled:
        return await self._call(QueueToggled, "POST", f"/api/v1/queues/{queue}/pause")

    async def resume_queue(self, queue: str) -> QueueToggled:
        return await self._call(QueueToggled, "POST", f"/api/v1/queues/{queue}/resume")

    async def health(self) -> Health:
        """/health, degraded (503) or not: `status` says which."""
        _, data = await self._request("GET", "/health", accept=frozenset({503}))
        return _decoder(Health).decode(data)  # type: ignore[no-any-return]

    async def cluster(self) -> ClusterInfo:
        """Every partition: who owns it, its end, and how far the answering node has read."""
        return await self._call(ClusterInfo, "GET", "/api/v1/cluster")

    # -- API keys (docs/security.md) ---------------------------------------------------------

    async def create_key(self, name: str, permissions: Iterable[str],
                         expires_at: datetime | None = None) -> NewKey:
        """A new key: its `key` is in this answer only."""
        body = {"name": name, "permissions": builtins.list(permissions),
                "expires_at": expires_at.isoformat() if expires_at else None}
        return await self._call(NewKey, "POST", "/api/v1/keys", _encoder.encode(body))

    async def keys(self) -> builtins.list[KeyView]:
        return await self._call(builtins.list[KeyView], "GET", "/api/v1/keys")

    async def revoke_key(self, key_id: str) -> KeyView:
        return await self._call(KeyView, "DELETE", f"/api/v1/keys/{key_id}")

    # -- users (docs/security.md) ------------------------------------------------------------

    async def register_user(self, username: str, password: str,
                            permissions: Iterable[str] | None = None) -> UserView:
        """A new user (admin only, unless the server has --open-registration)."""
        body: dict[str, Any] = {"username": username, "password": password}
        if permissions is not None:
            body["permissions"] = builtins.list(permissions)
        return await self._call(UserView, "POST", "/auth/register", _encoder.encode(body))

    async def login(self, username: str, password: str) -> Token:
        """A token to send as the api_key of another Client, until it expires."""
        body = {"username": username, "password": password}
        return await self._call(Token, "POST", "/auth/login", _encoder.encode(body))

    async def users(self) -> builtins.list[UserView]:
        return await self._call(builtins.list[UserView], "GET", "/api/v1/users")

    async def set_user_permissions(self, username: str, permissions: Iterable[str]) -> UserView:
        body = {"permissions": builtins.list(permissions)}
        return await self._call(UserView, "PUT", f"/api/v1/users/{username}/permissions",
                                _encoder.encode(body))

    async def remove_user(self, username: str) -> UserView:
        return await self._call(UserView, "DELETE", f"/api/v1/users/{username}")

    # -- schedules (docs/schedules.md) -------------------------------------------------------

    async def schedules(self) -> builtins.list[ScheduleView]:
        return await self._call(builtins.list[ScheduleView], "GET", "/api/v1/schedules")

    async def schedule(self, schedule_id: str) -> ScheduleView:
        return await self._call(ScheduleView, "GET", f"/api/v1/schedules/{schedule_id}")

    async def add_schedule(self, /, schedule_id: str, task_type: str, trigger: str,
                           **fields: Any) -> ScheduleView:
        """Define a schedule: trigger "interval" | "cron" | "date" | "manual", and its fields
        (seconds=30, expression="0 * * * *", run_date=...) and job options as keywords.
        Checked here as the server checks it (ScheduleError naming the field)."""
        body = _schedule_body(id=schedule_id, task_type=task_type, trigger=trigger, **fields)
        # The payload depth and the shortest interval are the server's settings: it checks them.
        definition_of(parse_request(body, HIGHEST_MAX_PAYLOAD_DEPTH), None, datetime.now(UTC))
        return await self._call(ScheduleView, "POST", "/api/v1/schedules", body)

    async def update_schedule(self, /, schedule_id: str, **fields: Any) -> ScheduleView:
        """Change the given fields only (with trigger=..., the trigger is rebuilt)."""
        body = _schedule_body(**fields)
        parse_request(body, HIGHEST_MAX_PAYLOAD_DEPTH)
        return await self._call(ScheduleView, "PUT", f"/api/v1/schedules/{schedule_id}", body)

    async def pause_schedule(self, schedule_id: str) -> ScheduleView:
        return await self._call(ScheduleView, "POST", f"/api/v1/schedules/{schedule_id}/pause")

    async def resume_schedule(self, schedule_id: str) -> ScheduleView:
        return await self._call(ScheduleView, "POST", f"/api/v1/schedules/{schedule_id}/resume")

    async def remove_schedule(self, schedule_id: str) -> None:
        await self._request("DELETE", f"/api/v1/schedules/{schedule_id}")

    async def trigger_schedule(self, schedule_id: str) -> str:
        """Run the schedule's job now; the task id (follow it with wait())."""
        path = f"/api/v1/schedules/{schedule_id}/trigger"
        return (await self._call(Triggered, "POST", path)).task_id

    # -- following tasks ----------------------------------------------------------------------

    async def changes(self, task_id: str, interval: float = 0.2) -> AsyncIterator[TaskDetail]:
        """The task as it is now, then again each time its status, attempt or progress
        changes (polling `get` every `interval` seconds); ends once it is finished
        (completed, failed, dead_letter or cancelled), that state yielded last."""
        seen: tuple[Any, ...] | None = None
        while True:
            task = await self.get(task_id)
            stage = (task.status, task.attempt, task.progress)
            if stage != seen:
                seen = stage
                yield task
            if task.status in TERMINAL:
                return
            await asyncio.sleep(interval)

    async def wait(self, task_id: str, timeout: float | None = None, interval: float = 0.2,
                   on_change: Callable[[TaskDetail], object] | None = None) -> TaskDetail:
        """The task once finished (completed, failed, dead_letter or cancelled). Waits
        without limit, or raises WaitTimeout (a TimeoutError) after `timeout` seconds;
        on_change is called with each state `changes` yields, the last one included."""
        task: TaskDetail | None = None
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                async for task in self.changes(task_id, interval):
                    if on_change is not None:
                        on_change(task)
        except TimeoutError:
            if not deadline.expired() or timeout is None:
                raise
            raise WaitTimeout(task_id, timeout, task) from None
        assert task is not None  # changes() yields at least the finished task
        return task

    def task_signals(self, task_id: str,
                     reconnect_for: float = 60.0) -> AsyncGenerator[None, None]:
        """Yields once subscribed to the task's changes over WS /ws, then each time it may
        have changed (state, runs, log lines): read it again at each step. A dropped
        connection is subscribed again (and yields), so no change goes unseen; it raises
        ServerUnreachable after `reconnect_for` seconds without a connection."""
        return task_signals(self, task_id, reconnect_for)

    def watch(self, *, task_types: Iterable[str] | None = None,
              statuses: Iterable[str] | None = None, queues: Iterable[str] | None = None,
              resume_from: str | None = None, reconnect_for: float = 60.0) -> Watch:
        """An async iterator of TaskUpdate over WS /ws: every change of a matching task
        (None: any), from now or from `resume_from` (a cursor a TaskUpdate carried). A
        dropped connection (a server restart, a client too slow) is resumed from the last
        cursor, so no update is lost; `.cursor` is where to resume a later watch from. It
        raises ServerUnreachable after `reconnect_for` seconds without a connection, and
        ResyncRequired when the server can no longer resume the cursor."""
        return Watch(self, task_types, statuses, queues, resume_from, reconnect_for)

    # -- listing, last: inside the class, `list` below names the method ----------------------

    async def list_page(self, *, status: str | None = None, task_type: str | None = None,
                        queue: str | None = None, limit: int = 100, offset: int = 0,
                        starting_after: str | None = None, as_of: AsOf = None,
                        ) -> builtins.list[TaskSummary]:
        """One page of task summaries, newest first (GET /api/v1/tasks); with as_of, of
        the tasks as they were then."""
        query = {"status": status, "task_type": task_type, "queue": queue, "limit": limit,
                 "offset": offset or None, "starting_after": starting_after,
                 **_as_of(as_of)}
        return await self._call(builtins.list[TaskSummary], "GET", "/api/v1/tasks", query=query)

    async def pages(self, *, status: str | None = None, task_type: str | None = None,
                    queue: str | None = None, since: datetime | None = None,
                    page_size: int = 100, starting_after: str | None = None,
                    as_of: AsOf = None) -> AsyncIterator[builtins.list[TaskSummary]]:
        """The matching tasks page by page, newest first (after the task `starting_after`,
        if given), down to those created at `since` (none older; a naive time is UTC).
        Each page asks for the tasks after the last one seen (starting_after), so every
        task that matches throughout is met exactly once, whatever is enqueued while
        paging."""
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        after = starting_after
        while True:
            page = await self.list_page(status=status, task_type=task_type, queue=queue,
                                        limit=page_size, starting_after=after, as_of=as_of)
            newer = page if since is None else [t for t in page if _created(t) >= since]
            if newer:
                yield newer
            if len(page) < page_size or len(newer) < len(page):
                return
            after = page[-1].task_id

    async def list(self, *, status: str | None = None, task_type: str | None = None,
                   queue: str | None = None, since: datetime | None = None,
                   page_size: int = 100, starting_after: str | None = None,
                   as_of: AsOf = None) -> AsyncIterator[TaskSummary]:
        """Every matching task, newest first, fetched a page at a time (see `pages`);
        with as_of, as they were then."""
        async for page in self.pages(status=status, task_type=task_type, queue=queue,
                                     since=since, page_size=page_size,
                                     starting_after=starting_after, as_of=as_of):
            for task in page:
                yield task


AsOf = str | datetime | None  # a time (naive: UTC), or a log position's text


def _as_of(as_of: AsOf) -> dict[str, str]:
    """The as_of query parameter, if any."""
    if as_of is None:
        return {}
    if isinstance(as_of, datetime):
        as_of = (as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)).isoformat()
    return {"as_of": as_of}


def _created(task: TaskSummary) -> datetime:
    return datetime.fromisoformat(task.created_at)


def _error_body(data: bytes) -> dict[str, Any]:
    """An error answer's JSON body; its text as `error` when it is not the JSON shape."""
    try:
        body = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return {"error": data.decode(errors="replace") or "no body"}
    return body if isinstance(body, dict) else {"error": str(body)}


def _schedule_body(**fields: Any) -> bytes:
    """A schedule request body from keywords; None means "not given"."""
    return _encoder.encode({k: v for k, v in fields.items() if v is not None})
