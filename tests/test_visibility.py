"""Waiting until the jobs read model shows an appended record (services/write/visibility.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from jobledger.projections.store import ReadModelStore
from jobledger.schemas import JobEnqueued
from jobledger.services.runtime.projector import Projector
from jobledger.services.write.visibility import VisibilityWaiters
from tests.support.builders import append, envelope, open_log


async def test_waits_answer_with_the_projected_state_or_none_once_their_time_is_up(
    tmp_path: Path,
) -> None:
    backend = await open_log(tmp_path / "log.db")
    store = await ReadModelStore.open(tmp_path / "views.db")
    try:
        projector = Projector(backend, store)
        await projector.load()
        waiters = VisibilityWaiters(projector)
        ((partition, offset),) = await append(
            backend, [envelope(JobEnqueued(job_id="seen", task_type="t"))])
        seen = asyncio.ensure_future(waiters.wait(partition, offset, "seen", 30))
        # Nothing projects these two: the one with the shorter time answers first.
        late = asyncio.ensure_future(waiters.wait(partition, offset + 1, "never", 0.2))
        early = asyncio.ensure_future(waiters.wait(partition, offset + 2, "never", 0.01))
        assert await early is None
        assert not late.done()
        assert await late is None
        projector.start()
        state = await seen
        assert state is not None and state.job_id == "seen" and state.status == "pending"
        assert await waiters.wait(partition, offset, "seen", 30) is None  # applied earlier
        assert futures_held(waiters) == []  # answered waits are not kept until their deadline
        await projector.stop()
    finally:
        await store.close()
        await backend.close()


def futures_held(waiters: VisibilityWaiters) -> list[asyncio.Future[object]]:
    """The futures reachable from the waiters' own containers."""
    found: list[asyncio.Future[object]] = []
    stack: list[object] = [v for name, v in vars(waiters).items() if name != "_projector"]
    while stack:
        item = stack.pop()
        if isinstance(item, asyncio.Future):
            found.append(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return found
