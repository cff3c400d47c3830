"""Backoff between attempts: exponential, capped, with jitter so retries do not stampede."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    base_seconds: float = 1.0
    cap_seconds: float = 3600.0
    jitter: float = 0.25  # up to +25 %
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1 for the first retry)."""
        # The exponent is capped so that a huge retry count cannot overflow the float.
        exact = min(self.cap_seconds, self.base_seconds * 2.0 ** min(retry - 1, 64))
        return exact * (1 + self.jitter * self.rng.random())
