"""The handler registry users write against:

    app = App()

    @app.job("send_email", max_retries=5, timeout=60)
    async def send_email(ctx: JobContext, payload: dict) -> dict:
        ctx.log.info("sending", to=payload["to"])
        ...

Async handlers run on the event loop; plain functions run in a thread pool.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

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

__all__ = ["App", "AppLoadError", "Handler", "PermanentError", "cron", "date", "interval",
           "load_app", "manual"]

HandlerFn = Callable[[JobContext, Any], Any]


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


class App:
    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        # Schedules declared with @app.job(..., schedule=...), by schedule id: the node
        # defines them on start (services/handlers/declared.py).
        self.schedules: dict[str, ScheduleDefinition] = {}

    def job(
        self, task_type: str, *, max_retries: int | None = None, timeout: float | None = None,
        schedule: Declared | None = None,
    ) -> Callable[[HandlerFn], HandlerFn]:
        """Register the decorated function as the handler of task_type; with schedule
        (cron(...), interval(...), date(...), manual(...)), also declare its schedule."""
        if not task_type:
            raise ValueError("task_type must not be empty")
        if task_type in self.handlers:
            raise ValueError(f"task_type {task_type!r} already has a handler")
        if schedule is not None:
            self._declare(schedule.id or task_type, schedule.definition(task_type))

        def register(fn: HandlerFn) -> HandlerFn:
            is_async = inspect.iscoroutinefunction(fn)
            self.handlers[task_type] = Handler(task_type, fn, is_async, max_retries, timeout)
            return fn

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
        raise AppLoadError(f"--app {spec}: {attr} is a {type(obj).__name__}, not a "
                           "jobledger App")
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
