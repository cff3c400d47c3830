"""Rate limits per principal: a token bucket for each API key, on each node.

A key may make `burst` requests at once, and `rate` more each second after that; a request
beyond them is refused with 429 and told when to come back (`Retry-After`, whole seconds,
at least 1). Each node keeps its own buckets, in memory: in the Kafka mode a key's limit is
per API node it calls (docs/security.md). Time comes from the node's clock, so tests use
a manual one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Decision:
    """One request's verdict, and what the RateLimit-* headers tell the caller."""

    allowed: bool
    limit: int  # the burst: requests a key may make at once
    remaining: int  # requests it may still make now
    reset_s: int  # seconds until its bucket is full again
    retry_after_s: int  # when refused: seconds until one more request is allowed

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"ratelimit-limit", b"%d" % self.limit),
                (b"ratelimit-remaining", b"%d" % self.remaining),
                (b"ratelimit-reset", b"%d" % self.reset_s)]


class RateLimiter:
    """rate: requests a second (> 0); burst: the bucket's size (>= 1); now: seconds."""

    def __init__(self, rate: float, burst: int, now: Callable[[], float]):
        self.rate = rate
        self.burst = burst
        self.now = now
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # principal -> (tokens, at)

    def take(self, principal: Hashable) -> Decision:
        """Spend one token of the principal's bucket, if it has one."""
        now = self.now()
        tokens, at = self._buckets.get(principal, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + max(0.0, now - at) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[principal] = (tokens, now)
        return Decision(
            allowed=allowed, limit=self.burst, remaining=int(tokens),
            reset_s=math.ceil((self.burst - tokens) / self.rate),
            retry_after_s=0 if allowed else max(1, math.ceil((1.0 - tokens) / self.rate)),
        )
