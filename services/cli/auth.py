"""The auth flags: `--auth on|off` and `--insecure-no-auth` of the commands that serve the
API, and `--api-key` of the commands that call it (docs/security.md)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from jobledger.services.security.bootstrap import SecuritySettings

# The folders a client looks in for admin.key, by the variables that place a server's files.
_DATA_VARIABLES = ("JOBLEDGER_DB", "JOBLEDGER_VIEWS")


def add_auth_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("auth and rate limits")
    group.add_argument("--auth", choices=("on", "off"),
                       help="require API keys (default: off when --host is a loopback "
                       "address, on for any other)")
    group.add_argument("--insecure-no-auth", action="store_true",
                       help="allow --auth off on an address other machines can reach")
    group.add_argument("--rate-limit", type=float, default=100.0, metavar="PER_SECOND",
                       help="with auth on: requests a second each API key may make, on "
                       "this node (default 100; 0: no limit)")
    group.add_argument("--rate-burst", type=int, default=200, metavar="REQUESTS",
                       help="with auth on: requests a key may make at once (default 200)")
    group.add_argument("--open-registration", action="store_true",
                       help="let anyone register a user (POST /auth/register), with "
                       "read_tasks only; else only an admin registers users")
    group.add_argument("--token-lifetime", type=int, default=900, metavar="SECONDS",
                       help="how long a sign-in token (POST /auth/login) is good for "
                       "(default 900); docs/security.md says where its signing secret "
                       "comes from")


def security_settings(args: argparse.Namespace, data_dir: Path) -> SecuritySettings:
    """The mode --auth and --host give (a refused combination is a ValueError naming the
    flags), JOBLEDGER_ADMIN_KEY, JOBLEDGER_JWT_SECRET, and where a first admin key's file
    goes. The two secrets have no flag: a flag's value shows in the process list."""
    from jobledger.services.security.bootstrap import (
        ADMIN_KEY_VARIABLE,
        SECRET_VARIABLE,
        SecuritySettings,
        auth_enabled,
    )

    enabled = auth_enabled(args.auth, args.host, args.insecure_no_auth)
    return SecuritySettings(enabled=enabled, admin_key=os.environ.get(ADMIN_KEY_VARIABLE) or None,
                            data_dir=data_dir, rate_limit=args.rate_limit,
                            rate_burst=args.rate_burst, open_registration=args.open_registration,
                            token_lifetime_s=args.token_lifetime,
                            jwt_secret=os.environ.get(SECRET_VARIABLE) or None)


def auth_text(settings: SecuritySettings) -> str:
    """The start-up line's word on auth."""
    if not settings.enabled:
        return "auth off"
    return "auth on (API keys, users)" + (", open registration" if settings.open_registration
                                          else "")


def warn_without_shared_secret(settings: SecuritySettings) -> None:
    """An API node of a Kafka cluster with auth on and no JOBLEDGER_JWT_SECRET signs tokens
    with a secret of its own (jwt.secret), which no other node accepts: say so."""
    import sys

    if settings.enabled and settings.jwt_secret is None:
        print("jobledger: warning: JOBLEDGER_JWT_SECRET is not set: sign-in tokens made here "
              "work on this API node only (its jwt.secret); give every API node the same "
              "value (docs/kafka.md)", file=sys.stderr)


def api_key_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-key", help="the API key to send (prefer JOBLEDGER_API_KEY: a "
                        "flag shows in the process list); default, for a server on this "
                        "machine: the admin.key its first start wrote")


def api_key_of(args: argparse.Namespace) -> str | None:
    """--api-key (or JOBLEDGER_API_KEY); else, when the server is on this machine, the key
    in the admin.key of its data folder (beside $JOBLEDGER_DB or $JOBLEDGER_VIEWS, or in
    the current folder). Never a key file's for a remote server: the key would leave the
    machine."""
    from jobledger.services.client.async_client import base_url_of
    from jobledger.services.security.bootstrap import ADMIN_KEY_FILE, is_loopback, read_key_file

    given: str | None = getattr(args, "api_key", None)
    if given or not is_loopback(urlsplit(base_url_of(args.server)).hostname or ""):
        return given
    folders = [Path(os.environ[v]).parent for v in _DATA_VARIABLES if os.environ.get(v)]
    for folder in [*folders, Path(".")]:
        key = read_key_file(folder / ADMIN_KEY_FILE)
        if key:
            return key
    return None

