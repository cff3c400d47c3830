"""Folding a batch of decoded events into read-model changes, in memory.

This is the part of a projection that thinks; projections/store.py only writes what it
returns. Events are applied one at a time, in order, so the result does not depend on how
the log was cut into batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, TypeVar

import msgspec

from jobledger.schemas import Envelope, JobLogged, QueuePaused, QueueResumed
from jobledger.schemas.jobs import QUEUE_EVENTS

from .jobs import JobState, Reducer, reduce_job
from .queues import QueueState, reduce_queue
from .rows import run_id, run_row
from .stats import StatsDelta, ended_run
from .workers import WorkerState, reduce_worker

_json = msgspec.json.Encoder()
S = TypeVar("S")


@dataclass
class JobsChange:
    """What a batch of the jobs topic changed."""

    jobs: dict[str, JobState] = field(default_factory=dict)  # final state per changed job
    positions: dict[str, tuple[int, int]] = field(default_factory=dict)  # job -> last change
    # Flat, three values an event, no tuple each: tuples are GC-tracked while they wait for
    # the write (docs/performance.md, "Figures behind the code").
    events: list[str | int] = field(default_factory=list)  # job id, partition, offset, ...
    ids: list[str | int] = field(default_factory=list)  # event id, partition, offset, ...
    runs: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # run_id -> row
    stats: StatsDelta = field(default_factory=StatsDelta)
    queues: dict[str, QueueState] = field(default_factory=dict)


def fold_jobs(
    envs: Iterable[Envelope],
    jobs: MutableMapping[str, JobState],
    queues: MutableMapping[str, QueueState],
    reduce: Reducer = reduce_job,
) -> JobsChange:
    """Apply envs to the states in `jobs` and `queues` (updated in place). `reduce` is
    reduce_job or one that gives the same results (jobs.SharedReductions)."""
    change = JobsChange()
    events, changed, positions, stats = change.events, change.jobs, change.positions, change.stats
    ids = change.ids
    before: dict[str, JobState | None] = {}  # each changed job's state before this batch
    runs: dict[tuple[str, int], JobState] = {}  # (job, attempt) -> its run's latest state
    get = jobs.get
    for env in envs:
        event = env.event
        if isinstance(event, QUEUE_EVENTS):
            _fold_queue(env, event, queues, change)
            continue
        job_id = event.job_id  # type: ignore[union-attr]  # so has every other job event
        # Every event belongs in the job's audit trail, the ones that change nothing too.
        events += (job_id, env.partition, env.offset)
        ids += (env.id, env.partition, env.offset)
        old = get(job_id)
        new = reduce(old, env)
        if new is old or new is None:
            continue
        if job_id not in changed:
            before[job_id] = old
        jobs[job_id] = changed[job_id] = new
        positions[job_id] = (env.partition, env.offset)
        if ended_run(old, new):
            stats.add_run_end(new)
        if old is None or old.status != new.status:
            stats.add_move(old, new)
        if new.attempt and (old is None or run_of(old) != run_of(new)):
            runs[(job_id, new.attempt)] = new
    for job_id, old in before.items():
        stats.add_status(old, changed[job_id])
    # A run's row is built once per batch, from its latest state.
    change.runs = {run_id(job_id, attempt): run_row(s) for (job_id, attempt), s in runs.items()}
    return change


def _fold_queue(env: Envelope, event: QueuePaused | QueueResumed,
                queues: MutableMapping[str, QueueState], change: JobsChange) -> None:
    old = queues.get(event.queue)
    new = reduce_queue(old, env)
    if new is not old and new is not None:
        queues[event.queue] = change.queues[event.queue] = new


def run_of(s: JobState) -> tuple[Any, ...]:
    """The fields of the latest run. A change that leaves them alone (a requeue, a cancel
    request) must not rewrite the run row: a requeue clears the job's error, and the ended
    run would lose its own."""
    return (s.attempt, s.run_status, s.worker_id, s.run_started_at, s.run_ended_at,
            s.processed, s.total, s.failed)


def log_rows(envs: Iterable[Envelope]) -> list[tuple[Any, ...]]:
    """run_logs rows of JobLogged events."""
    rows = []
    for env in envs:
        ev = env.event
        if isinstance(ev, JobLogged):
            rows.append((
                env.id, run_id(ev.job_id, ev.attempt), ev.job_id, ev.attempt, ev.level,
                ev.message, _json.encode(ev.details), int(env.time.timestamp() * 1000),
                env.partition, env.offset,
            ))
    return rows


def fold_states(
    envs: Iterable[Envelope], states: MutableMapping[str, S],
    reduce: Callable[[S | None, Envelope], S | None], key: Callable[[Envelope], str],
) -> dict[str, S]:
    """Apply envs to `states` (updated in place) with a reducer that returns the same object
    when an event changes nothing; the final state of each changed one, by `key`."""
    changed: dict[str, S] = {}
    for env in envs:
        state_id = key(env)
        old = states.get(state_id)
        new = reduce(old, env)
        if new is not old and new is not None:
            states[state_id] = changed[state_id] = new
    return changed


def fold_workers(
    envs: Iterable[Envelope], workers: MutableMapping[str, WorkerState]
) -> dict[str, WorkerState]:
    return fold_states(envs, workers, reduce_worker, attrgetter("event.worker_id"))
