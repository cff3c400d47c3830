"""What a partition owner holds of one partition, and how it is rebuilt from the log.

A snapshot is the owner's state of one partition as of a position: folding the
partition's records from that position on (through the same reducers the projections
use) brings it up to date. An owner that gains a partition starts from an empty snapshot
at offset 0 (or from the one it kept when it last lost that partition), folds the
partition up to its end, and only then starts deciding for it (services/kafka/ownership.py).
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from jobledger.projections.jobs import (
    JobState,
    Reducer,
    detached,
    reduce_job,
    revive,
    unpacked_trace,
)
from jobledger.projections.queues import QueueState, reduce_queue
from jobledger.projections.schedules import ScheduleState, reduce_schedule
from jobledger.schemas import Envelope, JobEnqueued, JobRequeued
from jobledger.schemas.codec import decode_batch
from jobledger.schemas.jobs import QUEUE_EVENTS
from jobledger.schemas.lifecycle import TERMINAL
from jobledger.services.log.protocol import Record


class Snapshot(Protocol):
    partition: int
    position: int  # the next offset to fold

    def fold(self, records: Sequence[Record]) -> None: ...

    def hold(self, state: Any) -> None:
        """Take in a state of the read model (one of this partition's, as of position)."""


def next_job_state(
    old: JobState | None, env: Envelope, finished_keyed: Container[str],
    reduce: Reducer = reduce_job,
) -> JobState | None:
    """A job's state after env, for an owner that forgets finished jobs: a JobEnqueued of a
    finished keyed job is a duplicate (None: nothing to do), and a JobRequeued of a
    forgotten job revives it from the event alone. Otherwise the reducer decides; it
    returns `old` itself when env changes nothing."""
    event = env.event
    if old is None and isinstance(event, JobEnqueued) and event.job_id in finished_keyed:
        return None
    if old is None and isinstance(event, JobRequeued):
        return revive(event, env)
    return reduce(old, env)


def merge_queues(
    mine: Mapping[str, QueueState], theirs: Iterable[QueueState]
) -> dict[str, QueueState]:
    """Queue states of two partitions: a pause is copied to every partition, so the newer
    state of a queue is the one a partition that has read further knows."""
    merged = dict(mine)
    for state in theirs:
        known = merged.get(state.queue)
        if known is None or state.updated_at > known.updated_at:
            merged[state.queue] = state
    return merged


class JobsFold:
    """Applies events of the jobs topic to the unfinished jobs and the queue states held:
    one partition's (JobsSnapshot) or those of every partition an owner holds (the
    Dispatcher). What a change means is each one's own: _queue_changed, _job_changed."""

    jobs: dict[str, JobState]
    queues: dict[str, QueueState]

    def _fold(self, env: Envelope, finished_keyed: Container[str], reduce: Reducer) -> None:
        event = env.event
        if isinstance(event, QUEUE_EVENTS):
            queue = reduce_queue(self.queues.get(event.queue), env)
            if queue is not None:
                self.queues[event.queue] = queue
                self._queue_changed(queue)
            return
        job_id = getattr(event, "job_id", None)
        if job_id is None:
            return  # another topic's event written here by mistake: nothing to decide
        old = self.jobs.get(job_id)
        # Finished jobs are not held: a duplicate JobEnqueued of one is ignored, a
        # JobRequeued revives it (next_job_state).
        new = next_job_state(old, env, finished_keyed, reduce)
        if new is not old and new is not None:
            self._job_changed(old, new)

    def _queue_changed(self, queue: QueueState) -> None:
        """A queue event was applied (the queue's state may be the one held before)."""

    def _job_changed(self, old: JobState | None, new: JobState) -> None:
        """A job's state changed (old: None if it was not held)."""
        raise NotImplementedError


def _mine(records: Sequence[Record], partition: int, position: int) -> list[Record]:
    return [r for r in records if r.partition == partition and r.offset >= position]


@dataclass
class JobsSnapshot(JobsFold):
    """One partition of the jobs topic: its unfinished jobs, the queue states it has seen
    and the finished jobs that carried an idempotency key (so a duplicate JobEnqueued of
    one is not taken for a new job)."""

    partition: int
    position: int = 0
    jobs: dict[str, JobState] = field(default_factory=dict)
    queues: dict[str, QueueState] = field(default_factory=dict)
    finished_keyed: set[str] = field(default_factory=set)
    # What the owner already knew finished before `position` (when it kept the snapshot).
    known_finished: Container[str] = frozenset()
    # The W3C trace context of unfinished jobs whose enqueue carried one (envelope `trace`):
    # the owner's spans of them join that trace (services/telemetry/jobs.py).
    traces: dict[str, Mapping[str, str]] = field(default_factory=dict)

    def __contains__(self, job_id: object) -> bool:
        """Is job_id a finished keyed job?"""
        return job_id in self.finished_keyed or job_id in self.known_finished

    def fold(self, records: Sequence[Record]) -> None:
        mine = _mine(records, self.partition, self.position)
        if not mine:
            return
        self.position = mine[-1].offset + 1
        envs, _undecodable = decode_batch(mine)  # the projections quarantine them
        for env in envs:
            if env.trace and isinstance(env.event, JobEnqueued | JobRequeued):
                self.traces[env.event.job_id] = env.trace
            self._fold(env, self, reduce_job)

    def hold(self, state: JobState) -> None:
        self.jobs[state.job_id] = state
        if state.trace is not None:  # loaded from the read model (a restart)
            self.traces[state.job_id] = unpacked_trace(state.trace)

    def _job_changed(self, old: JobState | None, new: JobState) -> None:
        if new.status in TERMINAL:
            self.jobs.pop(new.job_id, None)
            self.traces.pop(new.job_id, None)
            if new.idempotency_key is not None:
                self.finished_keyed.add(new.job_id)
        else:
            self.jobs[new.job_id] = detached(new)


@dataclass
class SchedulesSnapshot:
    """One partition of the schedules topic: every schedule defined in it."""

    partition: int
    position: int = 0
    schedules: dict[str, ScheduleState] = field(default_factory=dict)

    def fold(self, records: Sequence[Record]) -> None:
        mine = _mine(records, self.partition, self.position)
        if not mine:
            return
        self.position = mine[-1].offset + 1
        envs, _undecodable = decode_batch(mine)
        for env in envs:
            schedule_id = getattr(env.event, "schedule_id", None)
            if schedule_id is None:
                continue
            new = reduce_schedule(self.schedules.get(schedule_id), env)
            if new is not None:
                self.schedules[schedule_id] = new

    def hold(self, state: ScheduleState) -> None:
        self.schedules[state.schedule_id] = state
