"""SyncClient: the Client with blocking calls, for scripts and for Django or Flask views.

    with SyncClient("http://127.0.0.1:8080") as client:
        task_id = client.submit("send_email", {"to": "a@example.com"})
        task = client.wait(task_id)
        for summary in client.list(status="pending"):
            ...

It is the async Client run on an event loop of its own, in a daemon thread: each method
sends the Client's coroutine to that loop and blocks until it is done. One implementation
of requests, retries, paging, waiting and watching serves both, and SyncClient cannot
drift from Client; the price is a thread hop per call, microseconds beside a request's
round trip. A transport-agnostic core with a second, blocking transport was the other
way: it would have needed its own copy of every loop that sleeps (429 retries, wait, the
watch's reconnects) and a blocking WebSocket library. Because the loop is private, a
SyncClient also works where the calling thread runs a loop of its own (an async view, a
notebook), where asyncio.run() would refuse.

One SyncClient may be shared by the threads of a process (calls from several threads run
concurrently on its loop). After a fork (a pre-forking server), the child starts a loop
and a connection pool of its own on first use.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from typing import Any, Concatenate, ParamSpec, TypeVar

from opentelemetry import context as otel_context

from jobledger.schemas.api import TaskUpdate
from jobledger.services.client.async_client import Client
from jobledger.services.client.watch import Watch

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class _Loop:
    """An event loop running in a daemon thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name="jobledger-client")
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, R]) -> R:
        """The coroutine's result, run on this loop; the caller blocks meanwhile. An
        interrupt of the caller (Ctrl-C) cancels the coroutine."""
        # The caller's OpenTelemetry context goes along: a span current in the caller's
        # thread is the parent of the request's client span on the loop's thread.
        future = asyncio.run_coroutine_threadsafe(_in_context(coro, otel_context.get_current()),
                                                  self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def iterate(self, items: AsyncIterator[T]) -> Iterator[T]:
        """The async iterator's items, each fetched on this loop."""
        try:
            while True:
                try:
                    yield self.run(_next(items))
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None and self.loop.is_running():
                self.run(aclose())

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()
        self.loop.close()


async def _next(items: AsyncIterator[T]) -> T:
    return await anext(items)


async def _in_context(coro: Coroutine[Any, Any, R], context: otel_context.Context) -> R:
    token = otel_context.attach(context)
    try:
        return await coro
    finally:
        otel_context.detach(token)


def _blocking(method: Callable[Concatenate[Client, P], Coroutine[Any, Any, R]],
              ) -> Callable[Concatenate[SyncClient, P], R]:
    """The Client method as a blocking SyncClient method (same signature and docstring)."""

    @functools.wraps(method)
    def call(self: SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> R:
        client, loop = self._running()
        return loop.run(method(client, *args, **kwargs))

    return call


def _iterating(method: Callable[Concatenate[Client, P], AsyncIterator[T]],
               ) -> Callable[Concatenate[SyncClient, P], Iterator[T]]:
    """The Client's async iterator method as a SyncClient method returning an iterator."""

    @functools.wraps(method)
    def call(self: SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        client, loop = self._running()
        return loop.iterate(method(client, *args, **kwargs))

    return call


class SyncWatch:
    """Client.watch() as a blocking iterator of TaskUpdate; `cursor` as Watch's."""

    def __init__(self, watch: Watch, loop: _Loop):
        self._watch = watch
        self._loop = loop

    @property
    def cursor(self) -> str | None:
        return self._watch.cursor

    def __iter__(self) -> Iterator[TaskUpdate]:
        return self

    def __next__(self) -> TaskUpdate:
        try:
            return self._loop.run(self._watch.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def __enter__(self) -> SyncWatch:
        self._loop.run(self._watch.subscribe())
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._loop.run(self._watch.close())


class SyncClient:
    """Client's methods, blocking (see the module's docstring); the same arguments."""

    def __init__(self, base_url: str = "http://127.0.0.1:8080", timeout: float = 30.0,
                 api_key: str | None = None, *, rate_limit_wait: float = 30.0):
        self._options: dict[str, Any] = {"base_url": base_url, "timeout": timeout,
                                         "api_key": api_key, "rate_limit_wait": rate_limit_wait}
        self.base_url = Client(**self._options).base_url
        self._lock = threading.Lock()
        self._pid = -1
        self._client: Client | None = None
        self._loop: _Loop | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def _running(self) -> tuple[Client, _Loop]:
        """The client and its loop, started on first use (again in a forked child)."""
        with self._lock:
            if self._loop is None or self._client is None or self._pid != os.getpid():
                if self._finalizer is not None:
                    self._finalizer.detach()  # a forked child's copy: the thread is not here
                self._pid = os.getpid()
                self._loop = _Loop()
                self._client = Client(**self._options)
                # Stops the thread when the SyncClient is dropped without close().
                self._finalizer = weakref.finalize(self, _shut, self._client, self._loop,
                                                   self._pid)
            return self._client, self._loop

    def close(self) -> None:
        """Close the connections and stop the loop's thread."""
        with self._lock:
            if self._finalizer is not None:
                self._finalizer()
            self._client, self._loop, self._finalizer = None, None, None

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    submit = _blocking(Client.submit)
    submit_batch = _blocking(Client.submit_batch)
    submit_many = _blocking(Client.submit_many)
    get = _blocking(Client.get)
    cancel = _blocking(Client.cancel)
    requeue = _blocking(Client.requeue)
    history = _blocking(Client.history)
    causes = _blocking(Client.causes)
    runs = _blocking(Client.runs)
    list_runs = _blocking(Client.list_runs)
    run = _blocking(Client.run)
    logs = _blocking(Client.logs)
    stats = _blocking(Client.stats)
    workers = _blocking(Client.workers)
    queues = _blocking(Client.queues)
    pause_queue = _blocking(Client.pause_queue)
    resume_queue = _blocking(Client.resume_queue)
    health = _blocking(Client.health)
    cluster = _blocking(Client.cluster)
    schedules = _blocking(Client.schedules)
    schedule = _blocking(Client.schedule)
    add_schedule = _blocking(Client.add_schedule)
    update_schedule = _blocking(Client.update_schedule)
    pause_schedule = _blocking(Client.pause_schedule)
    resume_schedule = _blocking(Client.resume_schedule)
    remove_schedule = _blocking(Client.remove_schedule)
    trigger_schedule = _blocking(Client.trigger_schedule)
    wait = _blocking(Client.wait)
    changes = _iterating(Client.changes)
    list_page = _blocking(Client.list_page)
    pages = _iterating(Client.pages)
    list = _iterating(Client.list)

    def watch(self, *, task_types: Iterable[str] | None = None,
              statuses: Iterable[str] | None = None, queues: Iterable[str] | None = None,
              resume_from: str | None = None, reconnect_for: float = 60.0) -> SyncWatch:
        """Client.watch(), as a blocking iterator (SyncWatch)."""
        client, loop = self._running()
        return SyncWatch(client.watch(task_types=task_types, statuses=statuses, queues=queues,
                                      resume_from=resume_from, reconnect_for=reconnect_for),
                         loop)


def _shut(client: Client, loop: _Loop, pid: int) -> None:
    """Close the client and stop its loop, in the process that started them (a forked
    child has a copy of the loop, but not its thread)."""
    if os.getpid() == pid:
        loop.run(client.close())
        loop.stop()
