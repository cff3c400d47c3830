"""The security of one served node: its settings, its key and user indexes, kept current by
the projector, its token signer and login limits, and the start-up that loads them and
registers the first admin key."""

from __future__ import annotations

import asyncio
import secrets

import jwt

from jobledger.schemas import SECURITY, ActorKind
from jobledger.schemas.common import to_ms
from jobledger.services.log.protocol import LogError
from jobledger.services.node.base import Node
from jobledger.services.runtime.clock import Clock, SystemClock

from .bootstrap import SecuritySettings, bootstrap_admin
from .commands import KEYS
from .keys import digest_of
from .logins import LoginLimits, LoginRefused, LoginsLimited
from .passwords import Passwords
from .principals import KeyIndex, Principal, Unauthenticated, UserIndex
from .ratelimit import Decision, RateLimiter
from .sessions import Session, Sessions
from .tokens import Tokens, load_secret, looks_like_token

CATCH_UP_SECONDS = 60.0  # at start, how long the keys model may take to reach the log's end
_BEARER = "bearer"


class Security:
    """What the API asks about each request (api/auth.py), for the node it serves (start)."""

    def __init__(self, settings: SecuritySettings):
        self.settings = settings
        self.index = KeyIndex()
        self.users = UserIndex()
        self.notes: list[str] = []  # lines for the start-up output (api/server.py)
        self.clock: Clock = SystemClock()
        self.logins = LoginLimits(self._now_s)
        self.tokens: Tokens | None = None  # once started: the secret is read then
        self.passwords = Passwords()  # the node's, once started (its hashing slots)
        self.sessions = Sessions(self._now_ms)
        self.limiter: RateLimiter | None = None
        if settings.enabled and settings.rate_limit > 0:
            self.limiter = RateLimiter(settings.rate_limit, settings.rate_burst, self._now_s)

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an Authorization header's value (`Bearer <key or token>`);
        Unauthenticated saying what is wrong with it."""
        if not authorization:
            raise Unauthenticated("no credential: send the header Authorization: Bearer "
                                  "<API key or token>")
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != _BEARER or not credential:
            raise Unauthenticated("the Authorization header is not `Bearer <API key or token>`")
        if looks_like_token(credential):
            return self.users.principal(self._signer().subject(credential, self._now_s()))
        return self.index.authenticate(credential, self._now_ms)

    async def login(self, username: str, password: str, address: str) -> str:
        """A token for the user whose password this is; LoginRefused if it is not,
        LoginsLimited when the username or address has failed too often (logins.py)."""
        retry_after_s = self.logins.attempt(username, address)
        if retry_after_s:
            raise LoginsLimited(retry_after_s)
        user = self.users.named(username)
        if not await self.passwords.check(user.password_hash if user else None, password):
            raise LoginRefused("wrong username or password")
        assert user is not None  # a check without a hash says no
        self.logins.succeeded(username, address)
        return self._signer().issue(user.user_id, user.username, int(self._now_s()))

    def _signer(self) -> Tokens:
        if self.tokens is None:
            raise Unauthenticated("this server has not started: it checks no token yet")
        return self.tokens

    def open_session(self, authorization: str | None) -> tuple[str, Session, Principal]:
        """A dashboard session for the credential of an Authorization header (sessions.py):
        its id (the cookie), the session and its principal; Unauthenticated as
        authenticate."""
        principal = self.authenticate(authorization)
        credential = (authorization or "").strip().partition(" ")[2].strip()
        if principal.actor.kind == ActorKind.KEY:
            session_id, session = self.sessions.open(key_digest=digest_of(credential))
        else:
            session_id, session = self.sessions.open(token=credential,
                                                     ends_at_ms=_token_expiry_ms(credential))
        return session_id, session, principal

    def resolve(self, session: Session) -> Principal:
        """The principal of a session as of now: its credential authenticated again, so a
        revoked key or a removed user ends it; Unauthenticated saying why."""
        if session.key_digest is not None:
            return self.index.authenticate_digest(session.key_digest, self._now_ms)
        return self.authenticate(f"Bearer {session.token}")

    def admit(self, principal: Principal) -> Decision | None:
        """Spend one request of the principal's rate limit; None when there is no limit."""
        # By actor ({kind, id, name}): a key's and a user's ids cannot collide.
        return self.limiter.take(principal.actor) if self.limiter is not None else None

    def _now_ms(self) -> int:
        return to_ms(self.clock.now())

    def _now_s(self) -> float:
        return self.clock.now().timestamp()

    async def start(self, node: Node) -> None:
        """Follow the node's keys model, load it, and (auth on) register the first admin
        key."""
        self.clock = node.clock
        self.passwords = node.users.passwords
        node.projector.key_listeners.append(self.index.put)
        node.projector.user_listeners.append(self.users.put)
        self.index.put(await node.queries.keys())
        self.users.put(await node.queries.users())
        if not self.enabled:  # tokens are not checked: signed with a secret of the moment
            self.tokens = Tokens(secrets.token_bytes(32), self.settings.token_lifetime_s)
            return
        secret = load_secret(self.settings.jwt_secret, self.settings.data_dir)
        self.tokens = Tokens(secret, self.settings.token_lifetime_s)
        await _caught_up(node)
        note = await bootstrap_admin(self.settings, self.index, node.keys)
        if note:
            self.notes.append(note)

    def stop(self, node: Node) -> None:
        node.projector.key_listeners.remove(self.index.put)
        node.projector.user_listeners.remove(self.users.put)


def _token_expiry_ms(token: str) -> int | None:
    """When an authenticated sign-in token expires (its exp claim, already checked by
    authenticate, read here without checking again); None when it says nothing."""
    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        return None
    return int(exp * 1000) if isinstance(exp, int | float) else None


async def _caught_up(node: Node) -> None:
    """Wait until the keys model has applied the security topic up to its end as of now:
    whether an admin exists is decided on the whole log, never on part of it."""
    log = node.backend.topic(SECURITY)
    try:
        async with asyncio.timeout(CATCH_UP_SECONDS):
            for partition, end in (await log.end_offsets()).items():
                if end:
                    await node.projector.wait_for(KEYS, partition, end - 1)
    except TimeoutError:
        raise LogError(f"the API keys on the log ({log.topic} topic) were not all read "
                       f"within {CATCH_UP_SECONDS:g} s; auth cannot start") from None
