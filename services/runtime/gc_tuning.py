"""The cyclic garbage collector's setting for jobledger's long-running processes.

CPython collects its youngest generation every 700 net allocations of container objects.
Under load a jobledger process allocates several per event (tasks, callbacks, log entries)
that live until the log has taken them, so each young collection keeps finding the same
in-flight objects alive and moves them on, and the oldest generation fills with objects that
die soon after, which in turn brings full collections: in a drain, a large share of the
event loop's CPU. Collecting the young generation less often (together with the
dispatcher's bound on unread picks) cut that to a small one (docs/performance.md,
"Figures behind the code"). A young collection then looks at more objects at once, but
those that have died are already gone, so it stays short.
"""

from __future__ import annotations

import gc

YOUNG_COLLECTION_EVERY = 10_000  # net container allocations; CPython's default is 700


def tune_gc() -> None:
    """Collect the young generation less often; the older generations' thresholds, which
    count collections of the one below, stay as they are."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, middle, old)
