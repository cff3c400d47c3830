"""Failed logins, limited per username and per client address, on each node.

Each login attempt spends a token of two buckets, its username's and its client
address's, before its password is checked; a login that succeeds gives both back, so only
failures count. Spending first, rather than after a failure, means concurrent guesses
cannot all pass the check before any of them fails. When either bucket is empty the
answer is 429 with Retry-After, without checking the password (so without spending
argon2's time on it). A username that does not exist has a bucket like any other: the
limit does not tell which usernames exist.

The address is the TCP peer's. Behind a reverse proxy every client has the proxy's
address, so the per-address limit then applies to all of them together (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Callable

from .ratelimit import RateLimiter

# A username may fail 5 times at once, then once a minute: a person mistyping is not held
# up, a guesser gets 1,440 tries a day at most (against passwords of 15 characters or more).
USERNAME_BURST, USERNAME_PER_S = 5, 1 / 60
# An address may fail 20 times at once, then once every 6 s (people behind one NAT share it).
ADDRESS_BURST, ADDRESS_PER_S = 20, 1 / 6
# Buckets kept before the full ones are dropped: names tried by a sprayer cannot grow the
# table without bound (a full bucket is what a new one would be, so no answer changes).
MAX_BUCKETS = 10_000


class LoginLimits:
    """now: seconds, by the node's clock."""

    def __init__(self, now: Callable[[], float]):
        self.by_username = RateLimiter(USERNAME_PER_S, USERNAME_BURST, now)
        self.by_address = RateLimiter(ADDRESS_PER_S, ADDRESS_BURST, now)

    def attempt(self, username: str, address: str) -> int:
        """Spend one attempt of both buckets: 0 if allowed, else the seconds to wait
        (Retry-After) and nothing spent."""
        refusals = [d.retry_after_s for d in (self.by_username.peek(username),
                                              self.by_address.peek(address)) if not d.allowed]
        if refusals:
            return max(refusals)
        for limiter in (self.by_username, self.by_address):
            if len(limiter) >= MAX_BUCKETS:
                limiter.forget_full()
        self.by_username.take(username)
        self.by_address.take(address)
        return 0

    def succeeded(self, username: str, address: str) -> None:
        """The attempt did not fail: it does not count."""
        self.by_username.give_back(username)
        self.by_address.give_back(address)


class LoginRefused(Exception):
    """Wrong username or password (401): which of the two is never said."""


class LoginsLimited(Exception):
    """Too many failed logins for the username or the address (429)."""

    def __init__(self, retry_after_s: int):
        super().__init__("Rate limit exceeded")
        self.retry_after_s = retry_after_s
