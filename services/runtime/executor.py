"""Worker slots: run handlers of picked jobs and say how each attempt ended.

The executor decides nothing about the job's future (retries, dead letter): it reports an
Outcome to the dispatcher, which owns those decisions.
"""

from __future__ import annotations

import asyncio
import contextvars
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import msgspec
from opentelemetry import context as otel_context

from jobledger.projections.jobs import JobState
from jobledger.services.handlers.app import App, Handler, PermanentError
from jobledger.services.handlers.context import (
    EmitLogOf,
    EnqueueChild,
    JobCancelledError,
    JobContext,
)
from jobledger.services.telemetry.jobs import JobTraces

_decode_payload = msgspec.json.Decoder()
_encode_result = msgspec.json.Encoder()


@dataclass(frozen=True)
class Succeeded:
    result: msgspec.Raw


@dataclass(frozen=True)
class Failed:
    error: str
    stack: str | None
    permanent: bool = False


@dataclass(frozen=True)
class Cancelled:
    pass


Outcome = Succeeded | Failed | Cancelled


@dataclass
class Running:
    job: JobState
    attempt: int
    ctx: JobContext
    task: asyncio.Task[None]
    report: bool = True  # False once the dispatcher has decided this attempt itself


Report = Callable[[Running, Outcome], None]


class Executor:
    def __init__(
        self, app: App, concurrency: int, report: Report, emit_log: EmitLogOf,
        freed: Callable[[], None] = lambda: None, enqueue: EnqueueChild | None = None,
        traces: JobTraces | None = None,
    ):
        self._enqueue = enqueue
        self.app = app
        self.traces = traces  # None: tracing off, and no context is copied per attempt
        self.concurrency = concurrency
        self.running: dict[str, Running] = {}
        self._report = report
        self._emit_log = emit_log
        self._freed = freed  # told when a slot frees up other than by a report
        self._threads = ThreadPoolExecutor(concurrency, thread_name_prefix="jobledger-job")
        # Threads of cancelled sync handlers still running: a thread cannot be interrupted,
        # so its slot stays taken until the handler returns.
        self._orphans = 0

    @property
    def free(self) -> int:
        return self.concurrency - len(self.running) - self._orphans

    def is_running(self, job_id: str, attempt: int) -> bool:
        run = self.running.get(job_id)
        return run is not None and run.attempt == attempt

    def start(self, job: JobState, attempt: int, pick_id: str | None = None) -> None:
        """Run the attempt that the JobPicked of id pick_id started."""
        loop = asyncio.get_running_loop()
        ctx = JobContext(
            job_id=job.job_id, task_type=job.task_type, queue=job.queue, attempt=attempt,
            priority=job.priority, loop=loop, pick_id=pick_id,
            correlation_id=job.correlation_id, emit_log_of=self._emit_log,
            enqueue=self._enqueue,
        )
        handler = self.app.handlers.get(job.task_type)
        # The handler runs inside its attempt's span: a span it opens nests under it.
        context = None if self.traces is None else self._traced(job, attempt)
        task = loop.create_task(self._run(job, handler, ctx), name=f"job-{job.job_id}",
                                context=context)
        self.running[job.job_id] = Running(job, attempt, ctx, task)

    def _traced(self, job: JobState, attempt: int) -> contextvars.Context | None:
        assert self.traces is not None
        span = self.traces.attempt_started(job.job_id, attempt)
        if span is None:
            return None  # its trace is not sampled
        context = contextvars.copy_context()
        context.run(otel_context.attach, span)
        return context

    def cancel(self, job_id: str, report: bool) -> None:
        """Stop a running attempt. report=False: the dispatcher already recorded its end."""
        run = self.running.get(job_id)
        if run is None:
            return
        run.report = run.report and report
        run.ctx.mark_cancelled()
        run.task.cancel()

    async def _run(self, job: JobState, handler: Handler | None, ctx: JobContext) -> None:
        try:
            outcome = await self._call(job, handler, ctx)
        except asyncio.CancelledError:
            outcome = Cancelled()
        if self.traces is not None:
            self.traces.attempt_ended(job.job_id, ctx.attempt, *_traced_outcome(outcome))
        run = self.running.get(job.job_id)
        if run is None or run.ctx is not ctx:
            # A superseded attempt that ran on after it was cancelled: its end was decided
            # (lease expiry, timeout) and a newer attempt now holds the job's slot.
            return
        del self.running[job.job_id]
        if ctx.cancelled and not isinstance(outcome, Succeeded | Failed):
            outcome = Cancelled()
        if run.report:
            self._report(run, outcome)

    async def _call(self, job: JobState, handler: Handler | None, ctx: JobContext) -> Outcome:
        if handler is None:
            return Failed(f"no handler registered for task_type {job.task_type!r}", None, True)
        try:
            payload = _decode_payload.decode(job.payload)
        except (msgspec.DecodeError, RecursionError) as exc:
            # Never accepted by today's API (docs/reliability.md), but the log may hold one
            # from before, or from another producer: it will not decode next time either.
            return Failed(f"the payload cannot be decoded: {_describe(exc)}", None, permanent=True)
        try:
            if handler.is_async:
                result = await handler.fn(ctx, payload)
            else:
                result = await self._in_thread(handler, ctx, payload)
        except JobCancelledError:
            return Cancelled()
        except PermanentError as exc:
            return Failed(_describe(exc), traceback.format_exc(), permanent=True)
        except Exception as exc:  # a handler's error is the job's outcome, not ours
            return Failed(_describe(exc), traceback.format_exc())
        try:
            return Succeeded(msgspec.Raw(_encode_result.encode(result)))
        except (TypeError, msgspec.EncodeError) as exc:
            return Failed(f"the result is not JSON: {exc}", None, permanent=True)

    async def _in_thread(self, handler: Handler, ctx: JobContext, payload: Any) -> Any:
        loop = asyncio.get_running_loop()
        if self.traces is None:
            thread = self._threads.submit(handler.fn, ctx, payload)
        else:  # the thread runs in the attempt's context, its span current
            thread = self._threads.submit(contextvars.copy_context().run, handler.fn, ctx,
                                          payload)
        try:
            return await asyncio.wrap_future(thread, loop=loop)
        except asyncio.CancelledError:
            # The cancel reached the thread's future first: it is cancelled if it had not
            # started, and still running otherwise.
            if not thread.done():
                self._orphans += 1
                thread.add_done_callback(lambda _: self._tell_loop(loop, self._orphan_returned))
            raise

    @staticmethod
    def _tell_loop(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        try:
            loop.call_soon_threadsafe(callback)
        except RuntimeError:
            pass  # the loop is closed: nobody is left to give the slot to

    def _orphan_returned(self) -> None:
        self._orphans -= 1
        self._freed()

    async def stop(self, grace_seconds: float) -> list[Running]:
        """Let running attempts finish for grace_seconds, then cancel the rest silently;
        those are returned, for the dispatcher to hand back (Dispatcher.stop)."""
        tasks = [r.task for r in self.running.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=grace_seconds)
        unfinished = [run for run in self.running.values() if run.report]
        for job_id in list(self.running):
            self.cancel(job_id, report=False)
        await asyncio.gather(*tasks, return_exceptions=True)
        self._threads.shutdown(wait=False, cancel_futures=True)
        return unfinished


def _traced_outcome(outcome: Outcome) -> tuple[str | None, str]:
    """(the attempt span's error status, its outcome attribute)."""
    match outcome:
        case Succeeded():
            return None, "succeeded"
        case Failed(error=error):
            return error, "failed"
    return None, "cancelled"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
