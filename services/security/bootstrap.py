"""Whether auth is on, and the first admin key.

Auth defaults to off only when the server listens on loopback alone: then only this
machine reaches it. Any other address turns it on, and `--auth off` there is refused
unless `--insecure-no-auth` says it is meant (Redis's protected mode is the model).

The first admin key, when auth is on:
- JOBLEDGER_ADMIN_KEY, if set, is registered as an admin key (its id derives from its
  digest, so every node and every restart given the same value registers the same key,
  once; a revoked one stays revoked).
- Otherwise, if no key that holds admin still authenticates, one is made and written to
  `<data dir>/admin.key` (mode 0600). The start-up output names the file, never the key.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from jobledger.schemas import Actor, ActorKind, Permission
from jobledger.schemas.common import to_ms

from .commands import KeyCommands
from .keys import MIN_CHOSEN_KEY, digest_of
from .principals import KeyIndex

ADMIN_KEY_VARIABLE = "JOBLEDGER_ADMIN_KEY"
SECRET_VARIABLE = "JOBLEDGER_JWT_SECRET"  # the token signing secret (tokens.py)
MIN_SECRET_CHARS = 32  # HS256 wants a key of at least 256 bits (RFC 7518, 3.2)
ADMIN_KEY_FILE = "admin.key"
BOOTSTRAP_ACTOR = Actor(ActorKind.CLIENT, "bootstrap", "server start-up")
_LOCALHOST = "localhost"


def is_loopback(host: str) -> bool:
    """Does listening on host reach this machine only? 127.0.0.0/8, ::1 and localhost do;
    0.0.0.0, ::, a LAN address or any other name do not."""
    if host.strip().lower() == _LOCALHOST:
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def auth_enabled(choice: str | None, host: str, insecure_no_auth: bool) -> bool:
    """The mode in force for `--auth choice` on `--host host`; ValueError (one line naming
    the flags) for auth off on an address others can reach without --insecure-no-auth."""
    if choice is None:
        return not is_loopback(host)
    if choice == "on":
        return True
    if not is_loopback(host) and not insecure_no_auth:
        raise ValueError(
            f"--auth off with --host {host}: anyone who can reach the port could submit, "
            "read and cancel every task. Listen on 127.0.0.1, turn auth on, or add "
            "--insecure-no-auth to mean it")
    return False


@dataclass(frozen=True)
class SecuritySettings:
    """enabled: auth on. admin_key: JOBLEDGER_ADMIN_KEY's value (never printed: repr hides
    it). data_dir: where admin.key is written (the folder of the log or read models).
    rate_limit, rate_burst: each key's token bucket, with auth on (ratelimit.py); a
    rate_limit of 0 is no limit. The CLI's defaults are 100 a second with a burst of 200;
    here, none. open_registration: anyone may register, with read_tasks only.
    token_lifetime_s: how long a sign-in token is good for. jwt_secret:
    JOBLEDGER_JWT_SECRET's value (repr hides it); None: `<data_dir>/jwt.secret`."""

    enabled: bool = False
    admin_key: str | None = field(default=None, repr=False)
    data_dir: Path = Path(".")
    rate_limit: float = 0.0
    rate_burst: int = 200
    open_registration: bool = False
    token_lifetime_s: int = 900
    jwt_secret: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.rate_limit >= 0 or self.rate_limit == math.inf:
            raise ValueError(f"--rate-limit: give requests a second >= 0 (0: no limit), got "
                             f"{self.rate_limit!r}")
        if self.rate_burst < 1:
            raise ValueError(f"--rate-burst: give a number of requests >= 1, got "
                             f"{self.rate_burst!r}")
        if self.admin_key is not None and len(self.admin_key) < MIN_CHOSEN_KEY:
            raise ValueError(f"{ADMIN_KEY_VARIABLE}: give at least {MIN_CHOSEN_KEY} "
                             f"characters (it is a password to everything), got "
                             f"{len(self.admin_key)}")

        if self.token_lifetime_s < 1:
            raise ValueError(f"--token-lifetime: give seconds >= 1, got "
                             f"{self.token_lifetime_s!r}")
        if self.jwt_secret is not None and len(self.jwt_secret) < MIN_SECRET_CHARS:
            raise ValueError(f"{SECRET_VARIABLE}: give at least {MIN_SECRET_CHARS} characters "
                             f"(HS256 needs 256 bits), got {len(self.jwt_secret)}")

    @property
    def key_file(self) -> Path:
        return self.data_dir / ADMIN_KEY_FILE


def admin_key_id(key: str) -> str:
    """The id of JOBLEDGER_ADMIN_KEY's key: the same for the same value, on every node."""
    return "admin-" + digest_of(key)[:16]


async def bootstrap_admin(settings: SecuritySettings, index: KeyIndex,
                          keys: KeyCommands) -> str | None:
    """Register or create the first admin key (module docstring); the line to print about
    it, if any. Call once the keys read model has caught up with the log."""
    if not settings.enabled:
        return None
    if settings.admin_key is not None:
        return await _register_chosen(settings.admin_key, index, keys)
    if index.has_admin(to_ms(keys.clock.now())):
        return None
    _, key = await keys.create("admin (first start)", [Permission.ADMIN], BOOTSTRAP_ACTOR)
    write_key_file(settings.key_file, key)
    return (f"jobledger: created the first admin key, in {settings.key_file.resolve()} "
            "(mode 0600); `jobledger keys create` makes more")


async def _register_chosen(key: str, index: KeyIndex, keys: KeyCommands) -> str | None:
    state = index.state_of(key)
    if state is None:
        await keys.create(f"admin ({ADMIN_KEY_VARIABLE})", [Permission.ADMIN], BOOTSTRAP_ACTOR,
                          key=key, key_id=admin_key_id(key))
        return None
    if state.revoked_at is not None:
        return (f"jobledger: warning: {ADMIN_KEY_VARIABLE} names a key that was revoked; it "
                "does not authenticate (set another value)")
    return None


def write_key_file(path: Path, key: str) -> None:
    """Write the key to path, readable by this user only (0600) from the moment it
    exists: created under another name with that mode, then renamed over path."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (key + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def read_key_file(path: Path) -> str | None:
    """The key in a key file; None if there is no such file (or it is empty)."""
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None
