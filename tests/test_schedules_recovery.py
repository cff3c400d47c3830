"""A real server killed with SIGKILL while a schedule fires every second: after restarts,
each fire time has one job and at most one ScheduleFired, and no fire time is lost."""

from __future__ import annotations

import asyncio
from datetime import datetime
from functools import partial
from pathlib import Path

import pytest

from jobledger.projections.schedules import schedule_of_key
from jobledger.schemas import JOBS, SCHEDULES, Envelope, decode
from jobledger.schemas.common import to_ms
from jobledger.services.log.sqlite import SQLiteLogBackend
from tests.support.procs import ServerProcess, poll

pytestmark = pytest.mark.slow


async def read_log(db: Path) -> tuple[list[Envelope], list[Envelope]]:
    """(schedule events, JobEnqueued events) on the log file, read-only."""
    backend = await SQLiteLogBackend.open(db, {}, read_only=True)
    try:
        out: dict[str, list[Envelope]] = {SCHEDULES: [], JOBS: []}
        for topic in out:
            log = backend.topic(topic)
            for partition, end in (await log.end_offsets()).items():
                out[topic] += [decode(r.value) for r in await log.read(partition, 0, limit=end + 1)]
        return out[SCHEDULES], [e for e in out[JOBS] if e.type == "JobEnqueued"]
    finally:
        await backend.close()


def test_fires_survive_sigkill_once_each(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    args = ("--app", "schedules_app:app", "--lease-seconds", "2")
    # Killed twice while it fires (once it has fired twice since it started), then a
    # clean stop after the third run.
    for killed in (True, True, False):
        server = ServerProcess(db, *args)
        try:
            server.wait_healthy()
            seen = server.http.get("/api/v1/schedules/every_second").json()["last_fire_time"]
            poll(partial(_fired_since, server, seen, 2), 15, interval=0.05)
        finally:
            server.kill() if killed else server.stop()

    schedule_events, enqueued = asyncio.run(read_log(db))
    fired = [e.event for e in schedule_events if e.type == "ScheduleFired"]
    fire_times = [to_ms(f.fire_time) for f in fired]
    assert len(fire_times) >= 6
    assert len(set(fire_times)) == len(fire_times), "a fire time was recorded twice"
    # Each ScheduleFired names a job whose JobEnqueued is on the log (appended before it).
    jobs = {e.event.job_id: e.event for e in enqueued if schedule_of_key(e.event.idempotency_key)}
    assert all(f.job_id in jobs for f in fired)
    # One job id per fire time: a repeated enqueue of a fire time lands on the same job.
    keys_per_job = {job_id: {e.event.idempotency_key for e in enqueued if e.event.job_id == job_id}
                    for job_id in jobs}
    assert all(len(keys) == 1 for keys in keys_per_job.values())
    # No fire time lost: every second from the first to the last fire is fired or skipped.
    skipped: set[int] = set()
    for e in schedule_events:
        if e.type == "ScheduleSkipped":
            first = to_ms(e.event.fire_time)
            last = to_ms(e.event.last_fire_time or e.event.fire_time)
            skipped.update(range(first, last + 1, 1000))
    covered = set(fire_times) | skipped
    assert set(range(min(fire_times), max(fire_times) + 1, 1000)) <= covered


def _fired_since(server: ServerProcess, seen: str | None, count: int) -> bool:
    body = server.http.get("/api/v1/schedules/every_second").json()
    last = body["last_fire_time"]
    if last is None:
        return False
    if seen is None:
        return _seconds(last) - _seconds(body["created_at"]) >= count
    return _seconds(last) - _seconds(seen) >= count


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
