"""SharedReductions: the embedded node's dispatcher and projector reduce each event once
between them, and neither's results depend on it (which folds first, how the log is cut
into batches, or whether the other fold runs at all)."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Sequence
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobledger.projections.jobs import JobState, Reducer, SharedReductions, reduce_job
from jobledger.projections.store import ReadModelStore
from jobledger.schemas import JobEnqueued, JobPicked, JobSucceeded, QueuePaused, QueueResumed
from jobledger.schemas.codec import decode_batch
from jobledger.schemas.lifecycle import TERMINAL
from jobledger.services.log.protocol import Record
from jobledger.services.runtime.partition_state import next_job_state
from jobledger.services.runtime.projector import Projector
from tests.support.builders import at, envelope, open_log

from .test_projection_property import Appended, batches, build_log, histories


def owner_fold(records: Sequence[Record], jobs: dict[str, JobState], reduce: Reducer) -> None:
    """What the dispatcher keeps of each job (unfinished ones), folding as it does."""
    for env in decode_batch(records)[0]:
        if isinstance(env.event, QueuePaused | QueueResumed):
            continue
        job_id = env.event.job_id
        old = jobs.get(job_id)
        new = next_job_state(old, env, (), reduce)
        if new is None or new is old:
            continue
        if new.status in TERMINAL:
            jobs.pop(job_id, None)
        else:
            jobs[job_id] = new


async def project(
    tmp: Path, name: str, parts: Sequence[Sequence[Record]],
    reduce: Reducer, owner_first: Sequence[bool], owner: dict[str, JobState],
) -> dict[str, str]:
    backend = await open_log(tmp / "log.db")
    store = await ReadModelStore.open(tmp / f"{name}.db")
    try:
        projector = Projector(backend, store)
        projector.reduce = reduce
        for i, part in enumerate(parts):
            first = owner_first[i % len(owner_first)] if owner_first else True
            if first:
                owner_fold(part, owner, reduce)
            await projector.apply("jobs", part)
            if not first:
                owner_fold(part, owner, reduce)
        return await store.checksums()
    finally:
        await store.close()
        await backend.close()


async def scenario(
    tmp: Path, history: list[Appended], cuts: list[int], owner_first: list[bool]
) -> None:
    records = await build_log(tmp / "log.db", history)
    alone: dict[str, JobState] = {}
    plain = await project(tmp, "plain", [records], reduce_job, [True], alone)
    together: dict[str, JobState] = {}
    shared = await project(tmp, "shared", batches(records, cuts), SharedReductions(),
                           owner_first, together)
    assert shared == plain
    assert together == alone


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=histories(),
    cuts=st.lists(st.integers(0, 200), max_size=8),
    owner_first=st.lists(st.booleans(), max_size=6),
)
def test_sharing_reductions_changes_no_result(
    history: list[Appended], cuts: list[int], owner_first: list[bool]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp), history, cuts, owner_first))


def _run(job_id: str = "job-1") -> list:
    enqueued = envelope(JobEnqueued(job_id=job_id, task_type="t", queue="q"), 0)
    picked = envelope(
        JobPicked(job_id=job_id, attempt=1, worker_id="w", lease_expires_at=at(30)), 1)
    done = envelope(JobSucceeded(job_id=job_id, attempt=1), 2)
    return [enqueued, picked, done]


def test_the_second_fold_gets_the_first_folds_state_object() -> None:
    shared = SharedReductions()
    first: JobState | None = None
    second: JobState | None = None
    for env in _run():
        first = shared(first, env)
        second = shared(second, env)
        assert second is first
    assert first == _fold_plainly(_run())


def test_a_fold_from_another_state_computes_its_own() -> None:
    shared = SharedReductions()
    enqueued, picked, _ = _run()
    mine = shared(None, enqueued)
    other = reduce_job(None, enqueued)  # e.g. loaded from the store, not the shared object
    assert shared(mine, picked) == shared(other, picked) == reduce_job(other, picked)


def test_results_nobody_takes_are_not_held_beyond_the_limit() -> None:
    shared = SharedReductions(limit=4)
    for i in range(10):
        shared(None, _run(f"job-{i}")[0])
    assert len(shared._kept) <= 4


def _fold_plainly(envs: list) -> JobState | None:
    state = None
    for env in envs:
        state = reduce_job(state, env)
    return state
