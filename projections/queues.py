"""The queues reducer: whether a queue is paused. Pure.

Queue events are written to every partition of the jobs topic; applying a copy again
gives the same state, so the copies are harmless here.
"""

from __future__ import annotations

import msgspec

from jobledger.schemas import Envelope, QueuePaused
from jobledger.schemas.common import to_ms
from jobledger.schemas.jobs import QUEUE_EVENTS


class QueueState(msgspec.Struct, frozen=True, gc=False):
    queue: str
    paused: bool
    updated_at: int


def reduce_queue(state: QueueState | None, env: Envelope) -> QueueState | None:
    event = env.event
    if not isinstance(event, QUEUE_EVENTS):
        return state
    paused = isinstance(event, QueuePaused)
    if state is not None and state.paused == paused:
        return state
    return QueueState(queue=event.queue, paused=paused, updated_at=to_ms(env.time))
