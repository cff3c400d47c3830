"""Upcasters: turn an old version of an event into the current one, on read.

The log is never rewritten. Each entry maps (tag, version) to a function that takes the
event's JSON object at that version and returns it at version + 1; decoding applies them
in a chain until the current version is reached.

Envelope fields added since (causation_id, correlation_id, trace) need no upcaster: they
have defaults, so a record written without them decodes with them null (docs/events.md,
"Causal ids"); tests/golden/history_v1.jsonl holds such records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def _worker_heartbeat_v1(event: dict[str, Any]) -> dict[str, Any]:
    """Version 1 reported memory_bytes; version 2 reports memory_mb."""
    out = {k: v for k, v in event.items() if k != "memory_bytes"}
    out["memory_mb"] = round(event.get("memory_bytes", 0) / (1024 * 1024), 3)
    out["v"] = 2
    return out


UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("WorkerHeartbeat", 1): _worker_heartbeat_v1,
}


def upcast(event: dict[str, Any], current: int) -> dict[str, Any]:
    """Apply upcasters from the event's version up to `current`; KeyError if a step is missing."""
    while event.get("v", current) < current:
        event = UPCASTERS[(event["type"], event["v"])](event)
    return event
