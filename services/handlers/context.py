"""The typed context a handler receives: attempt, logger, progress, cancellation."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import msgspec

from jobledger.schemas import LogLevel, Progress

_json = msgspec.json.Encoder()


class JobCancelledError(Exception):
    """Raised by JobContext.raise_if_cancelled() in a sync handler once cancel is requested."""


class JobLogger:
    """Each line becomes a JobLogged event of the current run."""

    def __init__(self, emit: Callable[[LogLevel, str, dict[str, Any]], None]):
        self._emit = emit

    def trace(self, message: str, **details: Any) -> None:
        self._emit(LogLevel.TRACE, message, details)

    def info(self, message: str, **details: Any) -> None:
        self._emit(LogLevel.INFO, message, details)

    def warn(self, message: str, **details: Any) -> None:
        self._emit(LogLevel.WARN, message, details)

    def error(self, message: str, **details: Any) -> None:
        self._emit(LogLevel.ERROR, message, details)

    def fatal(self, message: str, **details: Any) -> None:
        self._emit(LogLevel.FATAL, message, details)


# Appends a job enqueued by a handler: (context, task type, payload, options) -> its id.
EnqueueChild = Callable[["JobContext", str, Any, dict[str, Any]], Awaitable[str]]
EmitLog = Callable[[LogLevel, str, dict[str, Any]], None]
# Emits a log line of the context given (the executor's: see JobContext).
EmitLogOf = Callable[["JobContext", LogLevel, str, dict[str, Any]], None]


class JobContext:
    """What a handler knows about the run it is in. Safe to use from a worker thread.

    pick_id is the id of the JobPicked event that started this attempt, correlation_id the
    chain the job belongs to (docs/events.md, "Causal ids"): the events of this attempt,
    and the jobs it enqueues, cite them.

    Log lines go to emit_log, or to emit_log_of with this context: the executor's emitter
    needs the context, and a closure over it held here would make every attempt a
    reference cycle, freed only by the cyclic GC (docs/performance.md, "Figures behind the
    code")."""

    def __init__(
        self, *, job_id: str, task_type: str, queue: str, attempt: int, priority: int,
        loop: asyncio.AbstractEventLoop, emit_log: EmitLog | None = None,
        emit_log_of: EmitLogOf | None = None, pick_id: str | None = None,
        correlation_id: str | None = None, enqueue: EnqueueChild | None = None,
    ):
        self.job_id = job_id
        self.task_type = task_type
        self.queue = queue
        self.attempt = attempt
        self.priority = priority
        self.pick_id = pick_id
        self.correlation_id = correlation_id
        self._enqueue = enqueue
        self.progress_now: Progress | None = None
        self._cancelled = False
        self._emit_log = emit_log
        self._emit_log_of = emit_log_of
        self._loop = loop
        self._log: JobLogger | None = None

    @property
    def log(self) -> JobLogger:
        """A logger whose lines become JobLogged events of this run."""
        if self._log is None:  # built on first use: most handlers never log
            self._log = JobLogger(self._threadsafe(self._emitter(), self._loop))
        return self._log

    def _emitter(self) -> EmitLog:
        if self._emit_log_of is not None:
            return partial(self._emit_log_of, self)  # a cycle only for a handler that logs
        if self._emit_log is None:
            raise RuntimeError("this context cannot log: it was made without an emitter")
        return self._emit_log

    @staticmethod
    def _threadsafe(emit: EmitLog, loop: asyncio.AbstractEventLoop) -> EmitLog:
        def call(level: LogLevel, message: str, details: dict[str, Any]) -> None:
            # Checked here, in the handler's own call: from a worker thread an encoding
            # error would surface on the event loop instead, and the line be lost unseen.
            try:
                _json.encode(details)
            except (TypeError, msgspec.EncodeError) as exc:
                raise TypeError(f"log details of {message!r} are not JSON: {exc}") from None
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                emit(level, message, details)
            else:  # in the handler's context, so the line is logged with its span
                loop.call_soon_threadsafe(emit, level, message, details,
                                          context=contextvars.copy_context())

        return call

    async def enqueue(self, task_type: str, payload: Any = None, **options: Any) -> str:
        """Enqueue a job from this attempt (options as Client.submit's); its id once the
        log has it. The job carries this job's correlation id, and this attempt's pick as
        its cause. Raises InvalidJob naming a bad argument."""
        if self._enqueue is None:
            raise RuntimeError("this context cannot enqueue jobs: it was made outside a worker")
        return await self._enqueue(self, task_type, payload, options)

    def enqueue_sync(self, task_type: str, payload: Any = None, **options: Any) -> str:
        """enqueue, for a sync handler (on a worker thread): blocks until it is appended."""
        future = asyncio.run_coroutine_threadsafe(
            self.enqueue(task_type, payload, **options), self._loop)
        return future.result()

    def progress(self, processed: int, total: int | None = None, failed: int = 0) -> None:
        """Report items done so far; sent with the next heartbeat. Raises ValueError
        (msgspec.ValidationError) for a count that is not an int >= 0, naming it."""
        # Validated now: a Struct is not checked when built, and a heartbeat carrying a bad
        # count would be quarantined when read back, so the lease would never be renewed.
        self.progress_now = msgspec.convert(
            {"processed": processed, "total": total, "failed": failed}, Progress
        )

    @property
    def cancelled(self) -> bool:
        """True once a cancel was requested (sync handlers poll this)."""
        return self._cancelled

    def raise_if_cancelled(self) -> None:
        if self._cancelled:
            raise JobCancelledError(f"job {self.job_id} was cancelled")

    def mark_cancelled(self) -> None:
        self._cancelled = True
