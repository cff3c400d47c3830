"""fold_jobs (projections/fold.py) in a drain: what it keeps per event until the batch is
written must not be GC-tracked objects (tuples), which bring young collections of the
cyclic GC to the event loop (docs/performance.md, "Since that run")."""

from __future__ import annotations

import gc

from jobledger.projections.fold import fold_jobs
from jobledger.schemas.jobs import JobHeartbeat
from tests.support.builders import at, envelope, job_state

EVENTS = 1_000


def test_the_audit_trail_and_event_ids_of_a_batch_add_no_tracked_object_per_event() -> None:
    # Heartbeats of jobs not running: each goes into the audit trail and the event-id
    # index, and changes no job, so nothing else of the fold is made per event.
    jobs = {f"j{i}": job_state(f"j{i}") for i in range(EVENTS)}
    envs = [envelope(JobHeartbeat(job_id=f"j{i}", attempt=1, lease_expires_at=at(60)),
                     event_id=f"e{i}", offset=i) for i in range(EVENTS)]
    gc.collect()
    gc.disable()
    try:
        before = gc.get_count()[0]
        change = fold_jobs(envs, jobs, {})
        tracked = gc.get_count()[0] - before
    finally:
        gc.enable()
    assert tracked < EVENTS // 10, f"{tracked} GC-tracked objects kept for {EVENTS} events"
    assert change.events[:3] == ["j0", 0, 0] and change.ids[-3:] == [f"e{EVENTS - 1}", 0, 999]
