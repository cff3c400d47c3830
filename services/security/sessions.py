"""Dashboard sessions: a browser signs in once with a credential (an API key, or a token
from /auth/login) and is then known by a session cookie.

1. The cookie holds only a random session id (256 bits). The server keeps, in memory, what
   the id stands for: the key's digest (never the key), or the sign-in token (itself a
   short-lived credential), and the session's CSRF token.
2. Nothing about the principal is trusted from the time of sign-in: each request resolves
   the session back to its credential and authenticates that again (Security.resolve), so
   a revoked key, an expired token or changed permissions take effect on the next request.
3. A session lives SESSION_LIFETIME_S (12 hours: a working day) from sign-in, and no longer
   than the token it was made from. Sign-out ends it at once. A restart ends them all.
4. At most MAX_SESSIONS are kept; a new one beyond that pushes out the oldest, so signing
   in again and again cannot grow memory.

Sessions are per API node: in Kafka mode a dashboard behind a load balancer needs sticky
sessions, or signs in again on the node it reaches (docs/security.md).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable

import msgspec

SESSION_LIFETIME_S = 12 * 3600
MAX_SESSIONS = 10_000
_ID_BYTES = 32


class Session(msgspec.Struct, frozen=True, gc=False):
    """What a session id stands for. Exactly one of key_digest and token is set."""

    csrf_token: str
    expires_at_ms: int
    key_digest: str | None = None  # a session made from an API key
    token: str | None = None  # a session made from a sign-in token (/auth/login)


class Sessions:
    """The sessions of one node, by the SHA-256 of their ids (a dump of this memory gives
    no cookie). now_ms: the node's clock."""

    def __init__(self, now_ms: Callable[[], int], max_sessions: int = MAX_SESSIONS):
        self.now_ms = now_ms
        self.max_sessions = max_sessions
        self._by_id: dict[str, Session] = {}  # insertion order: the oldest first

    def open(self, *, key_digest: str | None = None, token: str | None = None,
             ends_at_ms: int | None = None) -> tuple[str, Session]:
        """A new session (its id, for the cookie, and the session); ends_at_ms: the end of
        the credential's own life, if it has one (a token's expiry)."""
        assert (key_digest is None) != (token is None)
        expires = self.now_ms() + SESSION_LIFETIME_S * 1000
        if ends_at_ms is not None:
            expires = min(expires, ends_at_ms)
        session = Session(secrets.token_urlsafe(_ID_BYTES), expires, key_digest, token)
        session_id = secrets.token_urlsafe(_ID_BYTES)
        self._forget_expired()
        while len(self._by_id) >= self.max_sessions:
            del self._by_id[next(iter(self._by_id))]
        self._by_id[_digest(session_id)] = session
        return session_id, session

    def get(self, session_id: str) -> Session | None:
        """The live session of this id; None for an unknown, ended or expired one."""
        session = self._by_id.get(_digest(session_id))
        if session is not None and self.now_ms() >= session.expires_at_ms:
            self.close(session_id)
            return None
        return session

    def close(self, session_id: str) -> None:
        self._by_id.pop(_digest(session_id), None)

    def __len__(self) -> int:
        return len(self._by_id)

    def _forget_expired(self) -> None:
        now = self.now_ms()
        for digest in [d for d, s in self._by_id.items() if now >= s.expires_at_ms]:
            del self._by_id[digest]


def csrf_matches(session: Session, presented: str | None) -> bool:
    """Is `presented` the session's CSRF token? Compared in constant time: unlike a key,
    this secret is compared, not looked up."""
    return presented is not None and hmac.compare_digest(presented.encode(),
                                                         session.csrf_token.encode())


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()
