"""Profiles of jobledger's drain, written to bench/results/drain_profile.txt.

The drain runs in-process (an EmbeddedNode in this process, no HTTP): queue `default`
paused, N no-op jobs enqueued, then profiled from the resume until the read model shows
every job completed. It runs twice, once per profiler, so they do not slow each other:

- py-spy (if installed) samples every thread of the process: how the time splits between
  the event loop, the log writer thread and aiosqlite's threads, and the functions on top
  of the stacks (self time);
- pyinstrument samples the event-loop thread: its call tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from .env import ROOT, Env
from .ledger import EmbeddedMode

TOP = 25  # functions listed
Around = Callable[[], AbstractAsyncContextManager[Any]]


async def drain(mode: EmbeddedMode, env: Env, around: Around = contextlib.nullcontext,
                telemetry: Any = None) -> float:
    """Seconds from the resume to all completed, with `around()` entered for that time
    (the node traced with `telemetry` if given: bench/tracing_overhead.py)."""
    from jobledger.services.write.producer import task_request

    jobs = env.sizes.drain_jobs
    async with mode.node(env, env.scratch("profile"), telemetry) as node:
        await node.commands.set_paused("default", True)
        seen = Counter[str]()
        loop = asyncio.get_running_loop()
        all_pending, all_done = loop.create_future(), loop.create_future()

        def count(projected: Any) -> None:
            for state in projected.change.jobs.values():
                seen[state.status] += 1
            if seen["pending"] >= jobs and not all_pending.done():
                all_pending.set_result(None)
            if seen["completed"] >= jobs and not all_done.done():
                all_done.set_result(None)

        node.projector.listeners.append(count)
        for i in range(0, jobs, env.sizes.batch):
            await node.commands.enqueue(
                [task_request("noop") for _ in range(min(env.sizes.batch, jobs - i))])
        await asyncio.wait_for(all_pending, 120)
        async with around():
            start = time.monotonic()
            await node.commands.set_paused("default", False)
            await asyncio.wait_for(all_done, 600)
            return time.monotonic() - start


async def _with_pyinstrument(mode: EmbeddedMode, env: Env) -> tuple[float, str]:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001, async_mode="disabled")

    @asynccontextmanager
    async def around() -> AsyncIterator[None]:
        profiler.start()
        try:
            yield
        finally:
            profiler.stop()

    seconds = await drain(mode, env, around)
    return seconds, profiler.output_text(unicode=True)


async def _with_py_spy(mode: EmbeddedMode, env: Env) -> tuple[float, str] | None:
    if shutil.which("py-spy") is None:
        return None
    raw = env.scratch("py-spy") / "drain.raw"

    @asynccontextmanager
    async def around() -> AsyncIterator[None]:
        spy = subprocess.Popen(  # noqa: ASYNC220 - starting it does not block; waiting is in a thread
            ["py-spy", "record", "--pid", str(os.getpid()), "--threads", "--format", "raw",
             "--rate", "250", "--nonblocking", "--output", str(raw)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        await asyncio.sleep(0.5)  # let it attach
        try:
            yield
        finally:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            await asyncio.to_thread(spy.wait, 30)

    seconds = await drain(mode, env, around)
    return (seconds, summarise_raw(raw.read_text())) if raw.exists() else None


def summarise_raw(text: str) -> str:
    """Thread shares and the top functions by self time, from py-spy's raw (collapsed) output."""
    threads, leaves = Counter[str](), Counter[tuple[str, str]]()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread = re.sub(r"-\d+", "", frames[0].split(": ", 1)[-1])  # Thread-12 -> Thread
        leaf = re.sub(r":\d+\)$", ")", frames[-1])
        threads[thread] += int(count)
        leaves[(thread, leaf)] += int(count)
    total = sum(threads.values()) or 1
    out = ["Samples by thread (share of all samples of running threads):", ""]
    out += [f"  {100 * n / total:5.1f}%  {thread}" for thread, n in threads.most_common()]
    out += ["", f"Top {TOP} functions by self time (share of all samples; thread):", ""]
    out += [f"  {100 * n / total:5.1f}%  {leaf}  [{thread}]"
            for (thread, leaf), n in leaves.most_common(TOP)]
    return "\n".join(out)


async def profile_drain(mode: EmbeddedMode, env: Env, out: Path) -> dict[str, Any]:
    jobs = env.sizes.drain_jobs
    spied = await _with_py_spy(mode, env)
    seconds, tree = await _with_pyinstrument(mode, env)
    parts = [(
        f"Profiles of the drain of {jobs:,} no-op jobs in one in-process EmbeddedNode "
        f"({mode.slots} worker slots), from the queue's resume until the read model showed all "
        "completed. Written by `python -m bench --only profile` (bench/profile_drain.py)."
    )]
    if spied is not None:
        parts += [(f"## py-spy, every thread ({spied[0]:.2f} s, {jobs / spied[0]:,.0f} jobs/s "
                   "while sampled at 250 Hz)"), spied[1]]
    parts += [(f"## pyinstrument, the event-loop thread ({seconds:.2f} s, {jobs / seconds:,.0f} "
               "jobs/s while profiled). Under uvloop, `[self]` of Runner.run is the loop's own C "
               "code, including its waits for the other threads."), tree]
    out.write_text("\n\n".join(parts) + "\n")
    where = out.resolve()
    shown = where.relative_to(ROOT) if where.is_relative_to(ROOT) else where
    return {"jobs": jobs, "file": str(shown),
            "jobs_per_s_pyinstrument": round(jobs / seconds, 1),
            "jobs_per_s_py_spy": round(jobs / spied[0], 1) if spied else None}
