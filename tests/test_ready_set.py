"""The ready set (services/runtime/ready_set.py): pending jobs in pick order, one heap per
queue, paused queues left out, stale entries left to the caller."""

from __future__ import annotations

from jobledger.services.runtime.ready_set import ReadySet
from tests.support.builders import job_state


def popped(ready: ReadySet) -> list[str]:
    """Every job id the set gives, in order, until it has none."""
    out = []
    while (job_id := ready.pop()) is not None:
        out.append(job_id)
    return out


def test_an_empty_set_gives_none() -> None:
    ready = ReadySet()
    assert ready.pop() is None and len(ready) == 0


def test_higher_priority_comes_first() -> None:
    ready = ReadySet()
    for job_id, priority in [("low", 10), ("high", 200), ("mid", 128)]:
        ready.push(job_state(job_id, priority=priority))
    assert popped(ready) == ["high", "mid", "low"]


def test_equal_priorities_go_by_run_time_then_enqueue_time_then_log_order() -> None:
    ready = ReadySet()
    ready.push(job_state("enqueued-later", created_at=2_000, created_offset=0))
    ready.push(job_state("second-in-log", created_at=1_000, created_offset=5))
    ready.push(job_state("first-in-log", created_at=1_000, created_offset=4))
    # A delayed job counts from its run_at, not from when it was enqueued.
    ready.push(job_state("due-late", created_at=0, run_at=3_000))
    assert popped(ready) == ["first-in-log", "second-in-log", "enqueued-later", "due-late"]


def test_the_best_head_of_every_queue_wins() -> None:
    ready = ReadySet()
    ready.push(job_state("a1", queue="a", priority=5))
    ready.push(job_state("b1", queue="b", priority=9))
    ready.push(job_state("a2", queue="a", priority=7))
    assert popped(ready) == ["b1", "a2", "a1"]


def test_a_paused_queue_is_left_out_until_resumed() -> None:
    ready = ReadySet()
    ready.push(job_state("report", queue="reports", priority=255))
    ready.push(job_state("email", queue="emails"))
    ready.paused.add("reports")
    assert len(ready) == 1
    assert popped(ready) == ["email"]

    ready.paused.discard("reports")
    assert len(ready) == 1 and popped(ready) == ["report"]


def test_a_job_pushed_twice_is_given_twice_and_the_caller_skips_the_stale_one() -> None:
    """Entries are removed lazily: the dispatcher checks each popped job's state."""
    ready = ReadySet()
    ready.push(job_state("j1"))
    ready.push(job_state("j1"))
    assert popped(ready) == ["j1", "j1"]
