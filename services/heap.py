"""The garbage collector of a long-running jobledger process."""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Take every object alive at startup (modules, the app, the config) out of the
    collector's reach. A full collection walks every tracked object, and these are most of
    them: under load it ran every few seconds and stopped the event loop for 40-50 ms each
    time, the worst of enqueue->start's tail (docs/performance.md). Called once, just
    before a process starts serving."""
    gc.collect()  # what is garbage now is not kept for ever
    gc.freeze()
