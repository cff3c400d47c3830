"""Worker slots (services/runtime/executor.py) through a real EmbeddedNode: how handlers run, what
the context gives them, and how each way an attempt can end is recorded."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import msgspec

from jobledger.schemas import JobStatus, RunStatus
from jobledger.services.handlers.app import App, PermanentError
from jobledger.services.handlers.context import JobContext
from jobledger.services.write.commands import CancelOutcome
from tests.support.harness import (
    SAFETY_SECONDS,
    NodeFactory,
    advance,
    dispatcher_of,
    enqueue,
    job,
    logs,
    runs,
    settle,
    wait_until,
)

S = JobStatus


async def wait_thread_event(event: threading.Event) -> None:
    """Wait for a handler thread to set `event` (bounded by real time as a safety net)."""
    assert await asyncio.to_thread(event.wait, SAFETY_SECONDS), "the handler thread never got there"


async def test_async_handler_completes_with_its_result(make_node: NodeFactory) -> None:
    app = App()

    @app.job("double")
    async def double(ctx: JobContext, payload: dict[str, int]) -> dict[str, int]:
        return {"doubled": payload["n"] * 2}

    node = await make_node(app)
    job_id = await enqueue(node, "double", {"n": 21})

    done = await wait_until(node, job_id, S.COMPLETED)

    assert done.result is not None and msgspec.json.decode(done.result) == {"doubled": 42}
    assert (done.attempt, done.retry_count, done.error) == (1, 0, None)
    assert done.worker_id == dispatcher_of(node).config.worker_id
    assert await runs(node, job_id) == [(1, RunStatus.COMPLETED, None)]


async def test_context_gives_attempt_log_lines_and_progress(make_node: NodeFactory) -> None:
    app = App()
    release = asyncio.Event()
    attempts: list[int] = []

    @app.job("import")
    async def import_rows(ctx: JobContext, payload: Any) -> str:
        attempts.append(ctx.attempt)
        ctx.log.info("reading", source="s3://bucket/rows.csv")
        ctx.progress(3, total=10, failed=1)
        await release.wait()
        ctx.log.warn("row 7 skipped", row=7)
        return "ok"

    node = await make_node(app)
    job_id = await enqueue(node, "import")
    await wait_until(node, job_id, S.IN_PROGRESS)
    await settle(node)
    before = await job(node, job_id)
    assert (before.processed, before.total, before.failed) == (0, None, 0)

    # Progress travels with the next heartbeat.
    await advance(node, dispatcher_of(node).config.heartbeat_every)
    during = await job(node, job_id)
    assert (during.processed, during.total, during.failed) == (3, 10, 1)

    release.set()
    await wait_until(node, job_id, S.COMPLETED)
    await settle(node)
    assert attempts == [1]
    assert await logs(node, job_id) == [
        (1, "INFO", "reading", {"source": "s3://bucket/rows.csv"}),
        (1, "WARN", "row 7 skipped", {"row": 7}),
    ]


async def test_sync_handler_runs_in_the_thread_pool_and_completes(make_node: NodeFactory) -> None:
    app = App()
    threads: list[str] = []

    @app.job("blocking_io")
    def blocking_io(ctx: JobContext, payload: Any) -> dict[str, int]:
        threads.append(threading.current_thread().name)
        ctx.log.info("from a thread", attempt=ctx.attempt)
        ctx.progress(1, 1)
        return {"attempt": ctx.attempt}

    node = await make_node(app)
    job_id = await enqueue(node, "blocking_io")

    done = await wait_until(node, job_id, S.COMPLETED)

    assert done.result is not None and msgspec.json.decode(done.result) == {"attempt": 1}
    [thread] = threads
    assert thread.startswith("jobledger-job"), f"ran on {thread}, not in the worker pool"
    await settle(node)
    assert await logs(node, job_id) == [(1, "INFO", "from a thread", {"attempt": 1})]


async def test_sync_handler_sees_cancelled_and_the_job_ends_cancelled(
    make_node: NodeFactory,
) -> None:
    app = App()
    started, saw_cancel = threading.Event(), threading.Event()

    @app.job("poll")
    def poll(ctx: JobContext, payload: Any) -> str:
        started.set()
        give_up = time.monotonic() + SAFETY_SECONDS
        while not ctx.cancelled:  # a sync handler cannot be interrupted: it polls
            if time.monotonic() > give_up:
                return "never saw the cancel"
            time.sleep(0.001)  # the handler's own work, not the test waiting
        saw_cancel.set()
        ctx.raise_if_cancelled()
        return "unreachable"

    node = await make_node(app)
    job_id = await enqueue(node, "poll")
    await wait_until(node, job_id, S.IN_PROGRESS)
    await wait_thread_event(started)

    assert await node.commands.cancel(job_id) is CancelOutcome.REQUESTED

    cancelled = await wait_until(node, job_id, S.CANCELLED)
    await wait_thread_event(saw_cancel)
    assert cancelled.result is None
    await settle(node)
    assert await runs(node, job_id) == [(1, RunStatus.CANCELLED, None)]


async def test_cancelling_a_running_async_job_cancels_its_task(make_node: NodeFactory) -> None:
    app = App()
    observed: list[str] = []

    @app.job("wait_forever")
    async def wait_forever(ctx: JobContext, payload: Any) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            observed.append("CancelledError")
            raise

    node = await make_node(app)
    job_id = await enqueue(node, "wait_forever")
    await wait_until(node, job_id, S.IN_PROGRESS)

    assert await node.commands.cancel(job_id) is CancelOutcome.REQUESTED

    cancelled = await wait_until(node, job_id, S.CANCELLED)
    assert observed == ["CancelledError"]
    assert cancelled.finished_at is not None and cancelled.run_status == RunStatus.CANCELLED
    await settle(node)
    assert await runs(node, job_id) == [(1, RunStatus.CANCELLED, None)]
    assert dispatcher_of(node).executor.running == {}


async def test_permanent_error_fails_the_job_at_once_without_retry(make_node: NodeFactory) -> None:
    app = App()
    calls: list[int] = []

    class BadInput(PermanentError):
        pass

    @app.job("validate")
    async def validate(ctx: JobContext, payload: Any) -> None:
        calls.append(ctx.attempt)
        raise BadInput("email address has no @")

    node = await make_node(app)
    job_id = await enqueue(node, "validate", max_retries=5)

    failed = await wait_until(node, job_id, S.FAILED)
    assert failed.error == "BadInput: email address has no @"
    assert failed.stack is not None and "validate" in failed.stack
    assert failed.run_at is None and failed.finished_at is not None

    await advance(node, 60)  # far past the first retry's backoff: still no second attempt
    assert calls == [1]
    assert (await job(node, job_id)).status == S.FAILED
    assert await runs(node, job_id) == [(1, RunStatus.FAILED, "BadInput: email address has no @")]


async def test_unknown_task_type_fails_permanently_naming_it(make_node: NodeFactory) -> None:
    node = await make_node(App(), allow_unknown_task_types=True)  # else refused at enqueue
    job_id = await enqueue(node, "no_such_task", max_retries=5)

    failed = await wait_until(node, job_id, S.FAILED)

    assert failed.error is not None and "'no_such_task'" in failed.error
    await advance(node, 60)
    assert (await job(node, job_id)).attempt == 1


async def test_a_result_that_is_not_json_fails_permanently(make_node: NodeFactory) -> None:
    app = App()

    @app.job("returns_object")
    async def returns_object(ctx: JobContext, payload: Any) -> object:
        return object()

    node = await make_node(app)
    job_id = await enqueue(node, "returns_object")

    failed = await wait_until(node, job_id, S.FAILED)

    assert failed.error is not None and failed.error.startswith("the result is not JSON")


async def test_a_timed_out_sync_handler_keeps_its_slot_until_its_thread_returns(
    make_node: NodeFactory,
) -> None:
    app = App()
    started, finish = threading.Event(), threading.Event()
    quick_attempts: list[int] = []

    @app.job("stubborn")
    def stubborn(ctx: JobContext, payload: Any) -> str:
        started.set()
        finish.wait(SAFETY_SECONDS)  # blocking work that never looks at ctx.cancelled
        return "too late"

    @app.job("quick")
    def quick(ctx: JobContext, payload: Any) -> str:
        quick_attempts.append(ctx.attempt)
        return "quick"

    node = await make_node(app, concurrency=1)
    stubborn_id = await enqueue(node, "stubborn", timeout_seconds=5, max_retries=0)
    await wait_until(node, stubborn_id, S.IN_PROGRESS)
    await wait_thread_event(started)
    quick_id = await enqueue(node, "quick", timeout_seconds=5)

    await advance(node, 5.5)
    timed_out = await wait_until(node, stubborn_id, S.DEAD_LETTER)
    assert timed_out.error is not None and "timeout" in timed_out.error
    # The only thread is still busy: a job picked now would wait for it, and could time
    # out before its handler ever started.
    await advance(node, 10)
    assert (await job(node, quick_id)).status == S.PENDING and quick_attempts == []

    finish.set()
    done = await wait_until(node, quick_id, S.COMPLETED)
    assert (done.attempt, quick_attempts) == (1, [1])


async def test_a_bad_progress_count_is_refused_where_the_handler_reports_it(
    make_node: NodeFactory,
) -> None:
    app = App()
    errors: list[str] = []

    @app.job("miscounts")
    async def miscounts(ctx: JobContext, payload: Any) -> str:
        try:
            ctx.progress(-1, total=10)
        except ValueError as exc:
            errors.append(str(exc))
        ctx.progress(4, total=10)
        await asyncio.Event().wait()
        return "unreachable"

    node = await make_node(app)
    job_id = await enqueue(node, "miscounts")
    await wait_until(node, job_id, S.IN_PROGRESS)

    # Had the bad count been kept, its heartbeats would be quarantined as unreadable and
    # the lease of a live attempt would run out.
    await advance(node, 35)

    [error] = errors
    assert ">= 0" in error and "processed" in error
    alive = await job(node, job_id)
    assert (alive.status, alive.attempt, alive.processed, alive.total) == (S.IN_PROGRESS, 1, 4, 10)
    assert await node.queries.quarantined() == 0


async def test_log_details_that_are_not_json_fail_in_the_handler_thread(
    make_node: NodeFactory,
) -> None:
    app = App()

    @app.job("logs_an_object")
    def logs_an_object(ctx: JobContext, payload: Any) -> None:
        ctx.log.info("connected", client=object())

    node = await make_node(app)
    job_id = await enqueue(node, "logs_an_object", max_retries=0)

    failed = await wait_until(node, job_id, S.DEAD_LETTER)

    assert failed.error is not None
    assert failed.error.startswith("TypeError: log details of 'connected' are not JSON")


async def test_a_sync_handlers_log_line_is_emitted_in_its_threads_context() -> None:
    """ctx.log from a worker thread reaches the loop with the thread's contextvars, so the
    server's log line of it carries the span the handler runs in."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    seen: list[trace.Span] = []
    ctx = JobContext(job_id="j", task_type="t", queue="q", attempt=1, priority=1,
                     loop=asyncio.get_running_loop(),
                     emit_log=lambda *_: seen.append(trace.get_current_span()))
    tracer = TracerProvider().get_tracer("tests")

    def handler() -> trace.Span:
        with tracer.start_as_current_span("attempt") as span:
            ctx.log.info("from a thread")
            return span

    span = await asyncio.to_thread(handler)
    for _ in range(100):  # the loop runs the emit a turn or two later
        if seen:
            break
        await asyncio.sleep(0)
    assert seen == [span]


async def test_a_finished_attempts_context_is_freed_without_the_cyclic_gc(
        make_node: NodeFactory) -> None:
    """No reference cycle through the context of an attempt whose handler never logs: in a
    drain, a cycle per attempt meant more collections of the young generation, each
    freeing thousands of contexts (docs/performance.md)."""
    import gc
    import weakref

    app = App()
    contexts: list[weakref.ref[JobContext]] = []

    @app.job("quiet")
    async def quiet(ctx: JobContext, payload: Any) -> None:
        contexts.append(weakref.ref(ctx))

    node = await make_node(app)
    gc.collect()
    gc.disable()
    try:
        job_id = await enqueue(node, "quiet")
        await wait_until(node, job_id, S.COMPLETED)
        await settle(node)
        assert len(contexts) == 1 and contexts[0]() is None, "the context lives on in a cycle"
    finally:
        gc.enable()
