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


def security_settings(args: argparse.Namespace, data_dir: Path) -> SecuritySettings:
    """The mode --auth and --host give (a refused combination is a ValueError naming the
    flags), JOBLEDGER_ADMIN_KEY, and where a first admin key's file goes. The admin key
    has no flag: a flag's value shows in the process list."""
    from jobledger.services.security.bootstrap import (
        ADMIN_KEY_VARIABLE,
        SecuritySettings,
        auth_enabled,
    )

    enabled = auth_enabled(args.auth, args.host, args.insecure_no_auth)
    return SecuritySettings(enabled=enabled, admin_key=os.environ.get(ADMIN_KEY_VARIABLE) or None,
                            data_dir=data_dir, rate_limit=args.rate_limit,
                            rate_burst=args.rate_burst)


def auth_text(settings: SecuritySettings) -> str:
    """The start-up line's word on auth."""
    return "auth on (API keys)" if settings.enabled else "auth off"


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

