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
        return self._decide(principal, spend=True)

    def peek(self, principal: Hashable) -> Decision:
        """What take would answer now, spending nothing."""
        return self._decide(principal, spend=False)

    def give_back(self, principal: Hashable) -> None:
        """Return the token of a request that turned out not to count (a login that
        succeeded); the bucket never holds more than the burst."""
        tokens, at = self._buckets.get(principal, (float(self.burst), self.now()))
        self._buckets[principal] = (min(float(self.burst), tokens + 1.0), at)

    def forget_full(self) -> None:
        """Drop the buckets that have refilled: a full bucket is what a new one would be,
        so forgetting it changes no answer, and the table stays as small as the callers
        that are being held back (logins.py: one bucket per username tried)."""
        now = self.now()
        self._buckets = {
            principal: (tokens, at) for principal, (tokens, at) in self._buckets.items()
            if tokens + max(0.0, now - at) * self.rate < self.burst}

    def __len__(self) -> int:
        return len(self._buckets)

    def _decide(self, principal: Hashable, spend: bool) -> Decision:
        now = self.now()
        tokens, at = self._buckets.get(principal, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + max(0.0, now - at) * self.rate)
        allowed = tokens >= 1.0
        if allowed and spend:
            tokens -= 1.0
        if spend:
            self._buckets[principal] = (tokens, now)
        return Decision(
            allowed=allowed, limit=self.burst, remaining=int(tokens),
            reset_s=_whole_seconds((self.burst - tokens) / self.rate),
            retry_after_s=0 if allowed else max(1, _whole_seconds((1.0 - tokens) / self.rate)),
        )


def _whole_seconds(seconds: float) -> int:
    """Rounded up, after rounding away float noise: a token at 1/60 a second, 59 s after the
    bucket emptied, is 1.0000000000000009 s away, which is 1 s, not 2."""
    return math.ceil(round(seconds, 9))
