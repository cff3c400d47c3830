"""Stats as deltas of job state changes: counts per status and task type, and per status
and queue; queue depth per priority band; runs ended per minute (also per task type and
queue); the net change of each queue's pending jobs per minute; processing time. Pure:
derived from (old, new) only, so a change that is not applied twice is not counted twice."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from jobledger.schemas import JobStatus, RunStatus

from .jobs import JobState

HIGH_PRIORITY = 170  # high >= 170
NORMAL_PRIORITY = 85  # normal 85–169, low < 85
MINUTE_MS = 60_000


def priority_band(priority: int) -> str:
    if priority >= HIGH_PRIORITY:
        return "high"
    return "normal" if priority >= NORMAL_PRIORITY else "low"


@dataclass
class StatsDelta:
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (task_type, status)
    queue_counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (queue, status)
    depth: Counter[str] = field(default_factory=Counter)  # pending jobs per band
    ended: Counter[tuple[int, RunStatus]] = field(default_factory=Counter)  # (minute, outcome)
    # (minute, task type, queue, run outcome): throughput and failures per type and queue
    ended_by: Counter[tuple[int, str, str, RunStatus]] = field(default_factory=Counter)
    # (minute, queue): the net change of the queue's pending jobs in that minute; the depth
    # at the end of a minute is the depth now less the changes after it
    pending_moves: Counter[tuple[int, str]] = field(default_factory=Counter)
    processing_ms: int = 0
    processed_runs: int = 0

    def add_status(self, old: JobState | None, new: JobState) -> None:
        """Account for a job going from old to new, through any states in between: the
        counts and depths of the states in between cancel out (a job's task type and
        priority never change), so a batch adds this once per job, not once per event."""
        if old is None or old.status != new.status:
            self.counts[(new.task_type, new.status)] += 1
            self.queue_counts[(new.queue, new.status)] += 1
            if new.status == JobStatus.PENDING:
                self.depth[priority_band(new.priority)] += 1
            if old is not None:
                self.counts[(old.task_type, old.status)] -= 1
                self.queue_counts[(old.queue, old.status)] -= 1
                if old.status == JobStatus.PENDING:
                    self.depth[priority_band(old.priority)] -= 1

    def add_run_end(self, new: JobState) -> None:
        """Account for new's run having just ended (ended_run(old, new) said so)."""
        assert new.run_ended_at is not None and new.run_status is not None
        minute = new.run_ended_at // MINUTE_MS * MINUTE_MS
        self.ended[(minute, new.run_status)] += 1
        self.ended_by[(minute, new.task_type, new.queue, new.run_status)] += 1
        if new.run_status == RunStatus.COMPLETED and new.run_started_at is not None:
            self.processing_ms += new.run_ended_at - new.run_started_at
            self.processed_runs += 1


    def add_move(self, old: JobState | None, new: JobState) -> None:
        """Account for one event that changed the job's status from old's to new's, in the
        minute it happened (new.updated_at is its time). Called per event, not per batch:
        a job that went in and out of pending inside one batch moved in one minute and out
        in another, and the rows must not depend on how the log was cut into batches."""
        if new.status == JobStatus.PENDING:
            self.pending_moves[(new.updated_at // MINUTE_MS * MINUTE_MS, new.queue)] += 1
        elif old is not None and old.status == JobStatus.PENDING:
            self.pending_moves[(new.updated_at // MINUTE_MS * MINUTE_MS, new.queue)] -= 1

    def add(self, other: StatsDelta) -> None:
        """Add other's counts to these (the bulk replay sums its workers' deltas)."""
        self.counts.update(other.counts)
        self.queue_counts.update(other.queue_counts)
        self.depth.update(other.depth)
        self.ended.update(other.ended)
        self.ended_by.update(other.ended_by)
        self.pending_moves.update(other.pending_moves)
        self.processing_ms += other.processing_ms
        self.processed_runs += other.processed_runs


def ended_run(old: JobState | None, new: JobState) -> bool:
    """Did the change old -> new end a run? (each run ends once: it ends with its attempt)"""
    return new.run_status in _ENDED and (old is None or old.run_status != new.run_status)


_ENDED = frozenset({RunStatus.COMPLETED, RunStatus.FAILED})
