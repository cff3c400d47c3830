"""Stats as deltas of job state changes: counts per status and task type, queue depth per
priority band, runs ended per minute, processing time. Pure: derived from (old, new) only,
so a change that is not applied twice is not counted twice."""

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
    depth: Counter[str] = field(default_factory=Counter)  # pending jobs per band
    ended: Counter[tuple[int, RunStatus]] = field(default_factory=Counter)  # (minute, outcome)
    processing_ms: int = 0
    processed_runs: int = 0

    def add_status(self, old: JobState | None, new: JobState) -> None:
        """Account for a job going from old to new, through any states in between: the
        counts and depths of the states in between cancel out (a job's task type and
        priority never change), so a batch adds this once per job, not once per event."""
        if old is None or old.status != new.status:
            self.counts[(new.task_type, new.status)] += 1
            if new.status == JobStatus.PENDING:
                self.depth[priority_band(new.priority)] += 1
            if old is not None:
                self.counts[(old.task_type, old.status)] -= 1
                if old.status == JobStatus.PENDING:
                    self.depth[priority_band(old.priority)] -= 1

    def add_run_end(self, new: JobState) -> None:
        """Account for new's run having just ended (ended_run(old, new) said so)."""
        assert new.run_ended_at is not None and new.run_status is not None
        self.ended[(new.run_ended_at // MINUTE_MS * MINUTE_MS, new.run_status)] += 1
        if new.run_status == RunStatus.COMPLETED and new.run_started_at is not None:
            self.processing_ms += new.run_ended_at - new.run_started_at
            self.processed_runs += 1


def ended_run(old: JobState | None, new: JobState) -> bool:
    """Did the change old -> new end a run? (each run ends once: it ends with its attempt)"""
    return new.run_status in _ENDED and (old is None or old.run_status != new.run_status)


_ENDED = frozenset({RunStatus.COMPLETED, RunStatus.FAILED})
