"""Exactly-once state, as a property: however the log is cut into batches, and however often
a batch is delivered, the read models come out byte for byte the same.

Histories are random but valid-ish: a model of each job (the reducer itself) picks the
attempt numbers, so most events apply; stale attempts, duplicates and events in the wrong
state are mixed in on purpose, since they must be recorded and change nothing.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobledger.projections.jobs import JobState, reduce_job
from jobledger.projections.store import ReadModelStore
from jobledger.schemas import (
    JOBS,
    Envelope,
    Event,
    JobCancelled,
    JobCancelRequested,
    JobDue,
    JobEnqueued,
    JobFailed,
    JobHeartbeat,
    JobLeaseExpired,
    JobPicked,
    JobRequeued,
    JobStatus,
    JobSucceeded,
    Progress,
    QueuePaused,
    QueueResumed,
    encode,
)
from jobledger.services.log.protocol import Entry, Record
from jobledger.services.runtime.projector import Projector
from tests.support.builders import PARTITIONS, at, envelope, open_log

S = JobStatus
JOB_IDS = ("job-a", "job-b", "job-c", "job-d")
ACTIONS = (
    "enqueue", "enqueue_later", "due", "pick", "heartbeat", "fail_retry", "fail_dead",
    "fail_permanent", "lease_retry", "lease_dead", "succeed", "cancel_request",
    "cancel_waiting", "cancel_running", "requeue", "duplicate", "pause", "resume",
)


@dataclass(frozen=True)
class Appended:
    env: Envelope
    partition: int | None  # None: by key; queue events name each partition of the topic


def event_for(action: str, job_id: str, state: JobState | None, now: float, stale: bool) -> Event:
    """The event an actor would send for action, given the job's state as the log has it."""
    latest = state.attempt if state is not None else 0
    attempt = max(1, latest - 1 if stale else latest)  # stale: quote a superseded attempt
    match action:
        case "enqueue":
            return JobEnqueued(job_id=job_id, task_type=f"t{job_id[-1]}", priority=len(job_id) * 20)
        case "enqueue_later":
            return JobEnqueued(job_id=job_id, task_type="later", run_at=at(now + 30))
        case "due":
            return JobDue(job_id=job_id)
        case "pick":
            return JobPicked(job_id=job_id, attempt=latest if stale else latest + 1,
                             worker_id=f"w{latest % 2}", lease_expires_at=at(now + 30))
        case "heartbeat":
            return JobHeartbeat(job_id=job_id, attempt=attempt, lease_expires_at=at(now + 30),
                                progress=Progress(processed=int(now) % 50, total=50, failed=1))
        case "fail_retry" | "fail_dead" | "fail_permanent":
            return JobFailed(job_id=job_id, attempt=attempt, error=f"{action} at {now}",
                             retry_at=at(now + 20) if action == "fail_retry" else None,
                             permanent=action == "fail_permanent")
        case "lease_retry" | "lease_dead":
            retry_at = at(now + 20) if action == "lease_retry" else None
            return JobLeaseExpired(job_id=job_id, attempt=attempt, retry_at=retry_at)
        case "succeed":
            return JobSucceeded(job_id=job_id, attempt=attempt)
        case "cancel_request":
            return JobCancelRequested(job_id=job_id)
        case "cancel_waiting":
            return JobCancelled(job_id=job_id)
        case "cancel_running":
            return JobCancelled(job_id=job_id, attempt=attempt)
        case "requeue":
            return JobRequeued(job_id=job_id, task_type="requeued", attempt=latest)
    raise AssertionError(action)


# What an actor would most likely do next in each status; None: not enqueued yet.
LIKELY: dict[JobStatus | None, tuple[str, ...]] = {
    None: ("enqueue", "enqueue_later"),
    S.SCHEDULED: ("due", "due", "cancel_waiting", "cancel_request"),
    S.PENDING: ("pick", "pick", "pick", "cancel_waiting", "cancel_request"),
    S.IN_PROGRESS: ("heartbeat", "succeed", "fail_retry", "fail_dead", "fail_permanent",
                    "lease_retry", "lease_dead", "cancel_running", "cancel_request"),
    S.COMPLETED: ("requeue",),
    S.FAILED: ("requeue",),
    S.DEAD_LETTER: ("requeue",),
    S.CANCELLED: ("requeue",),
}


@st.composite
def histories(draw: st.DrawFn) -> list[Appended]:
    states: dict[str, JobState | None] = {}
    out: list[Appended] = []
    now = 0.0
    for _ in range(draw(st.integers(1, 80))):
        job_id = draw(st.sampled_from(JOB_IDS))
        state = states.get(job_id)
        # Mostly a likely next step; sometimes any action at all, in whatever state.
        likely = draw(st.integers(0, 9)) < 8
        choices = LIKELY[state.status if state else None] if likely else ACTIONS
        action = draw(st.sampled_from(choices))
        stale = draw(st.integers(0, 5)) == 0
        now += draw(st.integers(0, 45))  # gaps spread run ends over several minutes
        if action == "duplicate":
            if not out:
                continue
            # At-least-once delivery: the very same envelope (same id and time) again.
            out.append(out[draw(st.integers(0, len(out) - 1))])
            dup = out[-1].env
            if not isinstance(dup.event, QueuePaused | QueueResumed):
                states[dup.key] = reduce_job(states.get(dup.key), dup)
            continue
        if action in ("pause", "resume"):
            queue_event = QueuePaused(queue="q") if action == "pause" else QueueResumed(queue="q")
            env = envelope(queue_event, now, event_id=f"e{len(out)}")
            out += [Appended(env, p) for p in range(PARTITIONS[JOBS])]
            continue
        env = envelope(event_for(action, job_id, state, now, stale), now, event_id=f"e{len(out)}")
        states[job_id] = reduce_job(state, env)
        out.append(Appended(env, None))
    return out


async def build_log(path: Path, history: Sequence[Appended]) -> list[Record]:
    """Append the history once; every record of the jobs topic, partition by partition."""
    backend = await open_log(path)
    try:
        log = backend.topic(JOBS)
        await log.append([Entry(a.env.key, encode(a.env), a.partition) for a in history])
        return [r for p in range(log.partitions) for r in await log.read(p, 0, limit=10_000)]
    finally:
        await backend.close()


def interleave(records: Sequence[Record], order: Sequence[int]) -> list[Record]:
    """The records merged across partitions in a drawn order, each partition's kept: any
    order a tail of several partitions could deliver."""
    queues = {p: [r for r in records if r.partition == p] for p in range(PARTITIONS[JOBS])}
    out: list[Record] = []
    for choice in order:
        live = [p for p, q in queues.items() if q]
        if not live:
            break
        out.append(queues[live[choice % len(live)]].pop(0))
    return out + [r for q in queues.values() for r in q]


def batches(records: Sequence[Record], cuts: Sequence[int]) -> list[list[Record]]:
    bounds = sorted({c % (len(records) + 1) for c in cuts} | {0, len(records)})
    return [list(records[a:b]) for a, b in pairwise(bounds)]


async def fold_into(
    tmp: Path, name: str, log_path: Path, parts: Sequence[Sequence[Record]], *,
    twice: bool = False, cache_size: int = 20_000,
) -> dict[str, str]:
    """Apply parts in order to a fresh store; the store's checksums."""
    backend = await open_log(log_path)  # the projector only needs it to exist for apply()
    store = await ReadModelStore.open(tmp / f"{name}.db")
    try:
        projector = Projector(backend, store, cache_size=cache_size)
        for part in parts:
            await projector.apply("jobs", part)
            if twice:
                # Redelivered to the same projector, then to one restarted from the store.
                await projector.apply("jobs", part)
                restarted = Projector(backend, store, cache_size=cache_size)
                await restarted.load()
                await restarted.apply("jobs", part)
        return await store.checksums()
    finally:
        await store.close()
        await backend.close()


async def scenario(
    tmp: Path, history: list[Appended], order: list[int], cuts: list[int]
) -> None:
    records = interleave(await build_log(tmp / "log.db", history), order)
    log_path = tmp / "log.db"
    whole = await fold_into(tmp, "whole", log_path, [records])
    split = batches(records, cuts)
    # cache_size=1: states mostly come back from SQLite between batches, so the row
    # round trip (job_row / job_from_row) is part of what must not change anything.
    in_batches = await fold_into(tmp, "split", log_path, split, cache_size=1)
    twice = await fold_into(tmp, "twice", log_path, split, twice=True)
    assert in_batches == whole
    assert twice == whole


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=histories(),
    order=st.lists(st.integers(0, 1), max_size=80),
    cuts=st.lists(st.integers(0, 200), max_size=8),
)
def test_read_models_do_not_depend_on_batching_or_redelivery(
    history: list[Appended], order: list[int], cuts: list[int]
) -> None:
    # A fresh directory per example: hypothesis runs many examples in one test call, and a
    # function-scoped tmp_path would be shared between them.
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp), history, order, cuts))
