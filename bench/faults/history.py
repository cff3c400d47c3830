"""What the log says happened: every figure of the suite is counted here, from the records
of the jobs topic (the embedded log's SQLite file, or the Kafka topic read from offset 0),
never from what the processes report about themselves.

A job's history is its events in log order (all of one job's events share a partition).
From it: whether it finished, how many times it was picked (runs beyond the first are
redundant unless the first failed), and outcomes reported for an attempt that was no
longer current (stale), with whether the reducer the projections use let them change
the job (applied).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from jobledger.projections.jobs import JobState, reduce_job
from jobledger.schemas import JOBS, Envelope
from jobledger.schemas.codec import UndecodableRecord, decode
from jobledger.schemas.jobs import (
    JobCancelled,
    JobEnqueued,
    JobFailed,
    JobLeaseExpired,
    JobPicked,
    JobSucceeded,
)
from jobledger.schemas.lifecycle import TERMINAL


@dataclass
class JobHistory:
    job_id: str
    events: list[Envelope] = field(default_factory=list)

    def picks(self) -> list[JobPicked]:
        return [e.event for e in self.events if isinstance(e.event, JobPicked)]

    def pick_times(self) -> list[datetime]:
        return [e.time for e in self.events if isinstance(e.event, JobPicked)]

    def outcomes(self) -> list[Envelope]:
        return [e for e in self.events if isinstance(e.event, JobSucceeded | JobFailed)]

    def final(self) -> JobState | None:
        state = None
        for env in self.events:
            state = reduce_job(state, env)
        return state


@dataclass
class History:
    jobs: dict[str, JobHistory]
    undecodable: int

    def state(self, job_id: str) -> JobState | None:
        job = self.jobs.get(job_id)
        return job.final() if job else None

    def finished(self, job_id: str) -> bool:
        state = self.state(job_id)
        return state is not None and state.status in TERMINAL

    def lost(self, acknowledged: Iterable[str]) -> list[str]:
        """Acknowledged jobs with no JobEnqueued in the log (the log lost them)."""
        return [j for j in acknowledged
                if j not in self.jobs or not any(isinstance(e.event, JobEnqueued)
                                                 for e in self.jobs[j].events)]

    def unfinished(self, acknowledged: Iterable[str]) -> list[str]:
        return [j for j in acknowledged if not self.finished(j)]

    def redundant_runs(self, job_ids: Iterable[str]) -> int:
        """Picks beyond one per job, less those that followed a failed attempt the job was
        meant to retry (a handler error): each is a run of the same job done again."""
        extra = 0
        for j in job_ids:
            job = self.jobs.get(j)
            if job is None:
                continue
            failures = sum(1 for e in job.events if isinstance(e.event, JobFailed))
            extra += max(0, len(job.picks()) - 1 - failures)
        return extra

    def stale_outcomes(self) -> tuple[int, int]:
        """(written, applied): outcomes of an attempt that was no longer current when they
        were logged (its lease had expired or a later attempt was picked), and how many of
        them changed the job in the reducer the projections use."""
        written = applied = 0
        for job in self.jobs.values():
            state: JobState | None = None
            expired: set[int] = set()
            latest = 0
            for env in job.events:
                event = env.event
                if isinstance(event, JobLeaseExpired):
                    expired.add(event.attempt)
                stale = isinstance(event, JobSucceeded | JobFailed | JobCancelled) and \
                    event.attempt is not None and \
                    (event.attempt in expired or event.attempt < latest)
                after = reduce_job(state, env)
                if stale:
                    written += 1
                    applied += after is not state
                if isinstance(event, JobPicked):
                    latest = max(latest, event.attempt)
                state = after
        return written, applied


def history_of(values: Iterable[bytes]) -> History:
    jobs: dict[str, JobHistory] = {}
    bad = 0
    for value in values:
        try:
            env = decode(value)
        except UndecodableRecord:
            bad += 1
            continue
        job_id = getattr(env.event, "job_id", None)
        if job_id is not None:
            jobs.setdefault(job_id, JobHistory(job_id)).events.append(env)
    return History(jobs, bad)


def embedded_history(db: Path) -> History:
    """The jobs topic of an embedded log file, read-only, partition by partition in order."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        rows = conn.execute("SELECT CAST(value AS BLOB) FROM records WHERE topic = ? "
                            "ORDER BY partition, offset", (JOBS,))  # fmt: skip
        return history_of(bytes(v) for (v,) in rows)


def kafka_history(bootstrap: str, prefix: str, partitions: int) -> History:
    return asyncio.run(_kafka_values(bootstrap, prefix, partitions))


async def _kafka_values(bootstrap: str, prefix: str, partitions: int) -> History:
    from jobledger.services.log.kafka import KafkaConfig, KafkaLogBackend, jobledger_topics

    config = KafkaConfig(bootstrap, topic_prefix=prefix, partitions=partitions,
                         idempotent=False)  # the test broker refuses InitProducerId
    backend = await KafkaLogBackend.open(config, jobledger_topics(config))
    values: list[bytes] = []
    try:
        log = backend.topic(JOBS)
        for partition, end in (await log.end_offsets()).items():
            offset = 0
            while offset < end:
                records = await log.read(partition, offset, limit=5000)
                if not records:
                    break
                values += [r.value for r in records]
                offset = records[-1].offset + 1
    finally:
        await backend.close()
    return history_of(values)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]
