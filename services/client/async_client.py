"""The Python client: talks to a jobledger server over its REST API.

    async with Client("http://127.0.0.1:8080") as client:
        task_id = await client.submit("send_email", {"to": "a@example.com"})
        task = await client.wait(task_id)

Arguments are validated here with the server's own rules, so a bad one fails before any
request is sent, with the same message naming the field.

HTTP goes through aiohttp: one keep-alive session per Client. httpx's AsyncClient took
more time a request than the server itself, one request at a time (docs/performance.md,
"Figures behind the code").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import msgspec

from jobledger.schemas.api import HIGHEST_MAX_PAYLOAD_DEPTH, MAX_BATCH, BatchRequest, TaskRequest
from jobledger.schemas.lifecycle import TERMINAL
from jobledger.services.schedules.commands import definition_of, parse_request
from jobledger.services.write.producer import task_request

_encoder = msgspec.json.Encoder()


class ClientError(Exception):
    """The server refused a request; status, code and field say why."""

    def __init__(self, status: int, body: dict[str, Any]):
        super().__init__(body.get("error", f"HTTP {status}"))
        self.status = status
        self.code = body.get("code")
        self.field = body.get("field")


class ServerUnreachable(ConnectionError):
    """No answer from the server: it refused the connection, dropped it, or took longer
    than the client's timeout. A write may or may not have happened (use an idempotency
    key to retry an enqueue safely)."""


class WaitTimeout(TimeoutError):
    """wait() gave up: the task had not finished within its timeout. The task goes on (it
    is not cancelled); `.task` is its last state seen (None if no answer came in time)."""

    def __init__(self, task_id: str, timeout: float, task: dict[str, Any] | None):
        super().__init__(f"task {task_id} is still {task['status']} after {timeout:g} s" if task
                         else f"no answer about task {task_id} within {timeout:g} s")
        self.task_id = task_id
        self.task = task


_JSON = {"content-type": "application/json"}


def base_url_of(address: str) -> str:
    """The server's base URL; http:// is assumed when the address has no scheme, as in
    `127.0.0.1:8080` (aiohttp would otherwise fail on it with a bare InvalidURL)."""
    address = address.strip().rstrip("/")
    return address if "://" in address else f"http://{address}"


class Client:
    def __init__(self, base_url: str = "http://127.0.0.1:8080", timeout: float = 30.0):
        self.base_url = base_url_of(base_url)
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None  # made in the running loop

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout), raise_for_status=False)
        return self._session

    async def _call(self, method: str, path: str, content: bytes | None = None) -> Any:
        url = self.base_url + path
        try:
            async with self._http().request(method, url, data=content,
                                            headers=_JSON if content is not None else None) as response:
                body = await response.read()
        except aiohttp.ClientError as exc:
            # str() of some aiohttp errors is empty: the class name then says what happened.
            reason = str(exc) or type(exc).__name__
            raise ServerUnreachable(f"{method} {url}: {reason}") from exc
        except TimeoutError:
            raise ServerUnreachable(f"{method} {url}: no answer within {self.timeout:g} s") from None
        if response.status >= 400:
            try:
                error = msgspec.json.decode(body)
            except msgspec.DecodeError:
                error = {"error": body.decode(errors="replace")}
            raise ClientError(response.status, error if isinstance(error, dict) else {"error": str(error)})
        return msgspec.json.decode(body) if body else None

    async def submit(self, task_type: str, payload: Any = None, **options: Any) -> str:
        """Enqueue one task; returns its id (the existing one for a known idempotency_key)."""
        request = task_request(task_type, payload, **options)
        body = await self._call("POST", "/api/v1/tasks", _encoder.encode(request))
        return str(body["task_id"])

    async def submit_many(self, tasks: Iterable[TaskRequest]) -> list[str]:
        """Enqueue many tasks (build them with producer.task_request), MAX_BATCH per request,
        each request all-or-nothing."""
        tasks = list(tasks)
        ids: list[str] = []
        for i in range(0, len(tasks), MAX_BATCH):
            batch = BatchRequest(tasks=tasks[i : i + MAX_BATCH])
            body = await self._call("POST", "/api/v1/tasks/batch", _encoder.encode(batch))
            ids.extend(body["task_ids"])
        return ids

    async def get(self, task_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/api/v1/tasks/{task_id}")  # type: ignore[no-any-return]

    async def cancel(self, task_id: str) -> None:
        await self._call("POST", f"/api/v1/tasks/{task_id}/cancel")

    async def requeue(self, task_id: str) -> None:
        await self._call("POST", f"/api/v1/tasks/{task_id}/requeue")

    async def stats(self) -> dict[str, Any]:
        return await self._call("GET", "/api/v1/stats")  # type: ignore[no-any-return]

    # -- schedules (docs/schedules.md) -------------------------------------------------------

    async def schedules(self) -> list[dict[str, Any]]:
        return await self._call("GET", "/api/v1/schedules")  # type: ignore[no-any-return]

    async def schedule(self, schedule_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/api/v1/schedules/{schedule_id}")  # type: ignore[no-any-return]

    async def add_schedule(self, schedule_id: str, task_type: str, trigger: str,
                           **fields: Any) -> dict[str, Any]:
        """Define a schedule: trigger "interval" | "cron" | "date" | "manual", and its fields
        (seconds=30, expression="0 * * * *", run_date=...) and job options as keywords.
        Checked here as the server checks it (ScheduleError naming the field)."""
        body = _schedule_body(id=schedule_id, task_type=task_type, trigger=trigger, **fields)
        # The payload depth and the shortest interval are the server's settings: it checks them.
        definition_of(parse_request(body, HIGHEST_MAX_PAYLOAD_DEPTH), None, datetime.now(UTC))
        return await self._call("POST", "/api/v1/schedules", body)  # type: ignore[no-any-return]

    async def update_schedule(self, schedule_id: str, **fields: Any) -> dict[str, Any]:
        """Change the given fields only (with trigger=..., the trigger is rebuilt)."""
        body = _schedule_body(**fields)
        parse_request(body, HIGHEST_MAX_PAYLOAD_DEPTH)
        return await self._call("PUT", f"/api/v1/schedules/{schedule_id}", body)  # type: ignore[no-any-return]

    async def pause_schedule(self, schedule_id: str) -> dict[str, Any]:
        return await self._call("POST", f"/api/v1/schedules/{schedule_id}/pause")  # type: ignore[no-any-return]

    async def resume_schedule(self, schedule_id: str) -> dict[str, Any]:
        return await self._call("POST", f"/api/v1/schedules/{schedule_id}/resume")  # type: ignore[no-any-return]

    async def remove_schedule(self, schedule_id: str) -> None:
        await self._call("DELETE", f"/api/v1/schedules/{schedule_id}")

    async def trigger_schedule(self, schedule_id: str) -> str:
        """Run the schedule's job now; the task id (follow it with wait())."""
        body = await self._call("POST", f"/api/v1/schedules/{schedule_id}/trigger")
        return str(body["task_id"])

    async def changes(self, task_id: str, interval: float = 0.2) -> AsyncIterator[dict[str, Any]]:
        """The task as it is now, then again each time its status, attempt or progress
        changes (polling `get` every `interval` seconds); ends once it is finished
        (completed, failed, dead_letter or cancelled), that state yielded last."""
        seen: tuple[Any, ...] | None = None
        while True:
            task = await self.get(task_id)
            stage = (task["status"], task["attempt"], task["progress"])
            if stage != seen:
                seen = stage
                yield task
            if task["status"] in TERMINAL:
                return
            await asyncio.sleep(interval)

    async def wait(self, task_id: str, timeout: float | None = None, interval: float = 0.2,
                   on_change: Callable[[dict[str, Any]], object] | None = None) -> dict[str, Any]:
        """The task once finished (completed, failed, dead_letter or cancelled). Waits
        without limit, or raises WaitTimeout (a TimeoutError) after `timeout` seconds;
        on_change is called with each state `changes` yields, the last one included."""
        task: dict[str, Any] | None = None
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


def _schedule_body(**fields: Any) -> bytes:
    """A schedule request body from keywords; None means "not given"."""
    return _encoder.encode({k: v for k, v in fields.items() if v is not None})

