"""Big logs made fast: events encoded here and appended in large batches straight through
the mode's log backend (no API, no projections), built once per suite run and shared by the
runs that need them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.env import Env
from bench.ledger import Mode

BATCH = 30_000  # entries per append
SAMPLE_EVERY = 100  # keep one job id in this many, for the queries to look up


@dataclass
class BuiltLog:
    path: Path
    events: int
    jobs: int
    build_seconds: float
    sample_ids: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, float]:
        return {"events": self.events, "jobs": self.jobs,
                "append_events_per_s": round(self.events / self.build_seconds)}


async def _job_batches(
    jobs: int, completed_every: int, sample: list[str]
) -> AsyncIterator[list[tuple[str, bytes]]]:
    """Each job enqueued; every `completed_every`-th also picked and succeeded. Jobs are
    a millisecond apart, ending now: distinct creation times, as a real log has (the
    task lists order by them)."""
    import msgspec

    from jobledger.schemas import (
        Actor,
        ActorKind,
        Envelope,
        JobEnqueued,
        JobPicked,
        JobSucceeded,
        encode,
        uuid7,
    )

    first = datetime.now(UTC) - timedelta(milliseconds=jobs)
    api, worker = Actor(ActorKind.API, "bench"), Actor(ActorKind.WORKER, "w1")
    batch: list[tuple[str, bytes]] = []
    for n in range(jobs):
        job_id = uuid7()
        now = first + timedelta(milliseconds=n)
        if n % SAMPLE_EVERY == 0:
            sample.append(job_id)
        events: list[tuple[Actor, object]] = [
            (api, JobEnqueued(job_id=job_id, task_type="noop", payload=msgspec.Raw(b'{"n":1}')))
        ]
        if n % completed_every == 0:
            events.append((worker, JobPicked(job_id=job_id, attempt=1, worker_id="w1",
                                             lease_expires_at=now)))
            events.append((worker, JobSucceeded(job_id=job_id, attempt=1)))
        for actor, event in events:
            env = Envelope(id=uuid7(), key=job_id, time=now, actor=actor, event=event)  # type: ignore[arg-type]
            batch.append((job_id, encode(env)))
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def build(mode: Mode, env: Env, name: str, jobs: int, completed_every: int) -> BuiltLog:
    cached = env.cache.get(name)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    sample: list[str] = []
    start = time.monotonic()
    events = 0

    async def counted() -> AsyncIterator[list[tuple[str, bytes]]]:
        nonlocal events
        async for batch in _job_batches(jobs, completed_every, sample):
            events += len(batch)
            yield batch

    path = await mode.write_log(env.scratch(name), counted())
    built = BuiltLog(path, events, jobs, time.monotonic() - start, sample)
    env.cache[name] = built
    return built


async def replay_log(mode: Mode, env: Env) -> BuiltLog:
    """`replay_events` events: every job enqueued, picked and succeeded (3 events a job)."""
    return await build(mode, env, f"replay-log-{mode.key}", -(-env.sizes.replay_events // 3), 1)


async def tasks_log(mode: Mode, env: Env) -> BuiltLog:
    """`query_tasks` jobs, one in ten completed (enqueue, pick, success), the rest pending."""
    return await build(mode, env, f"tasks-log-{mode.key}", env.sizes.query_tasks, 10)
