"""Events of the security topic, keyed by key id: API keys created and revoked, and the
permissions a key can hold.

A key's secret never reaches the log. Its events carry the SHA-256 digest of the key
(enough to recognise it, useless to authenticate with) and a display prefix (`jl_AbCd1234`)
that people use to tell keys apart. Who created or revoked a key, and when, are the
envelope's actor and time, as for every other event: the keys read model
(projections/keys.py) keeps them, so "who gave this key admin, and when" is answered from
the log.

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


SecurityEvent = KeyCreated | KeyRevoked


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


class SessionView(msgspec.Struct):
    """Who the dashboard is signed in as (GET and POST /auth/session). With auth off: auth
    false, every permission, no actor and no session."""

    auth: bool  # is auth on?
    actor: ActorView | None  # the principal, with auth on
    permissions: list[Permission]  # what it may do (admin: everything)
    csrf_token: str | None  # with a session cookie: send it as X-CSRF-Token on every change
    expires_at: str | None  # when the session ends (sign in again then)
