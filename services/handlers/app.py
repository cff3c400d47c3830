"""The handler registry users write against:

    app = App()

    @app.job("send_email", max_retries=5, timeout=60)
    async def send_email(ctx: JobContext, payload: dict) -> dict:
        ctx.log.info("sending", to=payload["to"])
        ...

Async handlers run on the event loop; plain functions run in a thread pool. What @app.job
returns still calls like the function (`await send_email(ctx, payload)` in a test), and
enqueues a task of its type through a client:

    task_id = await send_email.enqueue(client, {"to": "a@example.com"}, priority=200)
    task_id = send_email.enqueue(sync_client, {"to": "a@example.com"})   # a SyncClient
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from jobledger.schemas.common import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_SECONDS
from jobledger.schemas.schedules import ScheduleDefinition
from jobledger.services.handlers.context import JobContext
from jobledger.services.handlers.declared import (
    Declared,
    check_schedule_id,
    cron,
    date,
    interval,
    manual,
)

if TYPE_CHECKING:
    from jobledger.services.client.async_client import Client
    from jobledger.services.client.sync_client import SyncClient

__all__ = ["App", "AppLoadError", "Handler", "Job", "PermanentError", "cron", "date",
           "interval", "load_app", "manual"]

HandlerFn = Callable[[JobContext, Any], Any]
PayloadT = TypeVar("PayloadT")
ResultT = TypeVar("ResultT")


class PermanentError(Exception):
    """Raise from a handler to fail the job now, without retries (status failed)."""


@dataclass(frozen=True)
class Handler:
    task_type: str
    fn: HandlerFn
    is_async: bool
    max_retries: int | None = None  # default for jobs enqueued without max_retries
    timeout: float | None = None  # default for jobs enqueued without timeout_seconds

    def limits(self, max_retries: int | None, timeout_seconds: float | None) -> tuple[int, float]:
        """(max_retries, timeout_seconds) a job of this type runs under (limits_in_effect)."""
        return limits_in_effect(self, max_retries, timeout_seconds)


def limits_in_effect(handler: Handler | None, max_retries: int | None,
                     timeout_seconds: float | None) -> tuple[int, float]:
    """(max_retries, timeout_seconds) a job runs under: the job's own where it gave them,
    else its handler's, else DEFAULT_MAX_RETRIES / DEFAULT_TIMEOUT_SECONDS. The one rule
    for the dispatcher (RetryPolicy) and for what the API shows."""
    if max_retries is None:
        max_retries = handler.max_retries if handler is not None else None
    if timeout_seconds is None:
        timeout_seconds = handler.timeout if handler is not None else None
    return (DEFAULT_MAX_RETRIES if max_retries is None else max_retries,
            DEFAULT_TIMEOUT_SECONDS if timeout_seconds is None else timeout_seconds)


class Job(Generic[PayloadT, ResultT]):
    """A handler as @app.job returns it: called, it is the function; `enqueue` submits a
    task of its type, with a payload of the type the handler takes."""

    def __init__(self, task_type: str, fn: Callable[[JobContext, PayloadT], ResultT]):
        self.task_type = task_type
        self.fn = fn
        functools.update_wrapper(self, fn)

    def __call__(self, ctx: JobContext, payload: PayloadT) -> ResultT:
        return self.fn(ctx, payload)

    @overload
    def enqueue(self, client: SyncClient, payload: PayloadT, *, priority: int | None = None,
                schedule_at: datetime | None = None, delay_seconds: float | None = None,
                timeout_seconds: float | None = None, max_retries: int | None = None,
                idempotency_key: str | None = None, queue: str | None = None) -> str: ...

    @overload
    def enqueue(self, client: Client, payload: PayloadT, *, priority: int | None = None,
                schedule_at: datetime | None = None, delay_seconds: float | None = None,
                timeout_seconds: float | None = None, max_retries: int | None = None,
                idempotency_key: str | None = None,
                queue: str | None = None) -> Coroutine[Any, Any, str]: ...

    def enqueue(self, client: Client | SyncClient, payload: PayloadT,
                **options: Any) -> str | Coroutine[Any, Any, str]:
        """Submit a task of this handler's type; its id (awaited with a Client, at once
        with a SyncClient). The options are Client.submit's; None leaves one out."""
        return client.submit(self.task_type, payload, **options)

    def __repr__(self) -> str:
        return f"<job {self.task_type!r}: {self.fn!r}>"


class App:
    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        # Schedules declared with @app.job(..., schedule=...), by schedule id: the node
        # defines them on start (services/handlers/declared.py).
        self.schedules: dict[str, ScheduleDefinition] = {}

    def job(
        self, task_type: str, *, max_retries: int | None = None, timeout: float | None = None,
        schedule: Declared | None = None,
    ) -> Callable[[Callable[[JobContext, PayloadT], ResultT]], Job[PayloadT, ResultT]]:
        """Register the decorated function as the handler of task_type; with schedule
        (cron(...), interval(...), date(...), manual(...)), also declare its schedule.
        Returns a Job: the function, with `.enqueue`."""
        if not task_type:
            raise ValueError("task_type must not be empty")
        if task_type in self.handlers:
            raise ValueError(f"task_type {task_type!r} already has a handler")
        if schedule is not None:
            self._declare(schedule.id or task_type, schedule.definition(task_type))

        def register(fn: Callable[[JobContext, PayloadT], ResultT]) -> Job[PayloadT, ResultT]:
            is_async = inspect.iscoroutinefunction(fn)
            self.handlers[task_type] = Handler(task_type, fn, is_async, max_retries, timeout)
            return Job(task_type, fn)

        return register

    def include(self, other: App) -> None:
        """Add every handler (and declared schedule) of another App (e.g. the demo jobs)."""
        for task_type, handler in other.handlers.items():
            if task_type in self.handlers:
                raise ValueError(f"task_type {task_type!r} already has a handler")
            self.handlers[task_type] = handler
        for schedule_id, definition in other.schedules.items():
            self._declare(schedule_id, definition)

    def _declare(self, schedule_id: str, definition: ScheduleDefinition) -> None:
        check_schedule_id(schedule_id)
        if schedule_id in self.schedules:
            raise ValueError(f"schedule {schedule_id!r} is declared twice")
        self.schedules[schedule_id] = definition


class AppLoadError(ValueError):
    """An --app spec that names no App; the message says which part is wrong."""


def load_app(spec: str) -> App:
    """Import 'module:attribute' and return the App it names. The current directory is
    searched first, as uvicorn and celery do, so `--app myjobs:app` finds ./myjobs.py.
    AppLoadError, one line, when the spec is malformed, its module is not found or fails to
    import, or its attribute is missing or not an App."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise AppLoadError(f"--app must look like module:attribute (e.g. myjobs:app), "
                           f"got {spec!r}")
    module = _import(module_name, spec)
    if not hasattr(module, attr):
        raise AppLoadError(f"--app {spec}: module {module_name} has no attribute {attr!r}")
    obj = getattr(module, attr)
    if not isinstance(obj, App):
        kind = "job handler" if isinstance(obj, Job) else type(obj).__name__
        raise AppLoadError(f"--app {spec}: {attr} is a {kind}, not a jobledger App")
    return obj


def _import(module_name: str, spec: str) -> ModuleType:
    import importlib

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if module_name == missing or module_name.startswith(missing + "."):  # it, or its package
            raise AppLoadError(f"--app {spec}: no module named {module_name!r} in "
                               f"{os.getcwd()} or on sys.path") from error
        raise AppLoadError(f"--app {spec}: importing {module_name} failed: {error}") from error
    except Exception as error:  # the module's own code raised
        raise AppLoadError(f"--app {spec}: importing {module_name} raised "
                           f"{type(error).__name__}: {error} (--debug shows where)") from error
