"""Events of the security topic: API keys created and revoked (keyed by key id), users
registered, their permissions changed and users removed (keyed by username), and the
permissions a key or user can hold.

A key's secret never reaches the log. Its events carry the SHA-256 digest of the key
(enough to recognise it, useless to authenticate with) and a display prefix (`jl_AbCd1234`)
that people use to tell keys apart. Who created or revoked a key, and when, are the
envelope's actor and time, as for every other event: the keys read model
(projections/keys.py) keeps them, so "who gave this key admin, and when" is answered from
the log.

A user's password never reaches the log either: UserRegistered carries its argon2id hash
(salted, memory-hard), which every API node needs to check a login. docs/security.md says
why that hash, unlike a key's digest, is still a secret-derived value to guard.

Tags are explicit and stable, as in schemas/jobs.py.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated

import msgspec

from .api import ActorView

KEY_PREFIX = "jl_"  # every generated key starts with it, so secret scanners can find keys


class Permission(enum.StrEnum):
    """What a key may do (docs/security.md has the table of routes)."""

    SUBMIT_TASKS = "submit_tasks"  # enqueue a task or a batch
    READ_TASKS = "read_tasks"  # every GET of tasks, runs, stats, workers, queues, schedules
    CANCEL_TASKS = "cancel_tasks"  # cancel and requeue tasks
    ADMIN = "admin"  # everything: schedules, queue pause/resume, keys, and the above


KeyId = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
KeyName = Annotated[str, msgspec.Meta(min_length=1, max_length=200,
                                      description="a label for people: who or what holds it")]
Digest = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$",
                                     description="hex SHA-256 of the whole key")]


class KeyCreated(msgspec.Struct, frozen=True, gc=False, tag="KeyCreated"):
    """A key that authenticates from now on, until it is revoked or expires_at passes."""

    key_id: KeyId
    name: KeyName
    prefix: str  # the key's first characters, shown to tell keys apart
    digest: Digest
    permissions: list[Permission]
    expires_at: datetime | None = None
    v: int = 1


class KeyRevoked(msgspec.Struct, frozen=True, gc=False, tag="KeyRevoked"):
    """The key no longer authenticates, on every node, from the moment each applies this."""

    key_id: KeyId
    v: int = 1


UserId = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Username = Annotated[str, msgspec.Meta(
    pattern="^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$",
    description="1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit; "
    "case-sensitive")]
PasswordHash = Annotated[str, msgspec.Meta(
    pattern="^[$]argon2id[$]", max_length=512, description="an argon2id PHC string")]


class UserRegistered(msgspec.Struct, frozen=True, gc=False, tag="UserRegistered"):
    """A user who can sign in from now on, until removed. user_id is this registration's
    own id: a username removed and registered again is another user, and tokens issued to
    the first one name its id, so they never authenticate as the second."""

    user_id: UserId
    username: Username
    password_hash: PasswordHash
    permissions: list[Permission]
    v: int = 1


class UserPermissionsChanged(msgspec.Struct, frozen=True, gc=False,
                             tag="UserPermissionsChanged"):
    """The user (this registration of the username) holds these permissions from now on."""

    user_id: UserId
    username: Username
    permissions: list[Permission]
    v: int = 1


class UserRemoved(msgspec.Struct, frozen=True, gc=False, tag="UserRemoved"):
    """The user can no longer sign in, and its tokens no longer authenticate."""

    user_id: UserId
    username: Username
    v: int = 1


SecurityEvent = KeyCreated | KeyRevoked | UserRegistered | UserPermissionsChanged | UserRemoved
# The two kinds of security events as tuples, for `type(event) in ...` (as QUEUE_EVENTS).
KEY_EVENTS = (KeyCreated, KeyRevoked)
USER_EVENTS = (UserRegistered, UserPermissionsChanged, UserRemoved)


# -- API shapes -------------------------------------------------------------------------------


class KeyRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """POST /api/v1/keys."""

    name: KeyName
    permissions: Annotated[list[Permission], msgspec.Meta(
        min_length=1, max_length=4, description="what the key may do (admin: everything)")]
    expires_at: Annotated[datetime, msgspec.Meta(
        tz=True, description="after it the key no longer authenticates; default: never")
    ] | None = None


class KeyStatus(enum.StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"  # expires_at has passed
    REVOKED = "revoked"


class KeyView(msgspec.Struct):
    """A key as GET /api/v1/keys lists it: never its secret."""

    id: str
    name: str
    prefix: str
    permissions: list[Permission]
    status: KeyStatus
    created_at: str
    created_by: ActorView
    expires_at: str | None
    revoked_at: str | None
    revoked_by: ActorView | None


class NewKey(msgspec.Struct):
    """The answer to POST /api/v1/keys: the only time the key itself is shown."""

    id: str
    name: str
    prefix: str
    permissions: list[Permission]
    created_at: str
    expires_at: str | None
    key: str


# -- users: API shapes ------------------------------------------------------------------------

MIN_PASSWORD_CHARS = 15  # NIST SP 800-63B rev. 4, for a password that is the only factor
MAX_PASSWORD_CHARS = 256  # a passphrase fits; bounds what one login makes argon2 hash
Password = Annotated[str, msgspec.Meta(
    min_length=MIN_PASSWORD_CHARS, max_length=MAX_PASSWORD_CHARS,
    description=f"{MIN_PASSWORD_CHARS}-{MAX_PASSWORD_CHARS} characters")]
UserPermissions = Annotated[list[Permission], msgspec.Meta(
    max_length=4, description="what the user may do (admin: everything)")]


class RegisterRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """POST /auth/register. permissions default to read_tasks."""

    username: Username
    password: Password
    permissions: UserPermissions = msgspec.field(
        default_factory=lambda: [Permission.READ_TASKS])


class LoginRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """POST /auth/login. The password's length is not checked here: a wrong one is a
    failed login like any other (never a 400 that says more)."""

    username: Annotated[str, msgspec.Meta(max_length=64)]
    password: Annotated[str, msgspec.Meta(max_length=MAX_PASSWORD_CHARS)]


class PermissionsRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """PUT /api/v1/users/{username}/permissions."""

    permissions: UserPermissions


class Token(msgspec.Struct):
    """The answer to POST /auth/login (seed 004's field names)."""

    token: str
    token_type: str  # "bearer"
    expires_in: int  # seconds


class UserStatus(enum.StrEnum):
    ACTIVE = "active"
    REMOVED = "removed"


class UserView(msgspec.Struct):
    """A user as GET /api/v1/users lists it: never the password or its hash."""

    id: str
    username: str
    permissions: list[Permission]
    status: UserStatus
    created_at: str
    created_by: ActorView
    changed_at: str | None  # the last change of permissions
    changed_by: ActorView | None
    removed_at: str | None
    removed_by: ActorView | None


class SessionView(msgspec.Struct):
    """Who the dashboard is signed in as (GET and POST /auth/session). With auth off: auth
    false, every permission, no actor and no session."""

    auth: bool  # is auth on?
    actor: ActorView | None  # the principal, with auth on
    permissions: list[Permission]  # what it may do (admin: everything)
    csrf_token: str | None  # with a session cookie: send it as X-CSRF-Token on every change
    expires_at: str | None  # when the session ends (sign in again then)
