"""`jobledger keys create|list|revoke`, through the REST API (admin only)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from jobledger.services.cli.common import (
    EXIT_CODES,
    ClientCall,
    UsageError,
    client_of,
    run_action,
)

EPILOG = """examples:
  jobledger keys create ci-producer --permissions submit_tasks,read_tasks --expires 90d
  jobledger keys list
  jobledger keys revoke 0190a6b2-7c1e-7000-8000-3f2a1b4c5d6e

`create` prints the key once, as the last line of its output: store it then. The server
keeps only its SHA-256 digest.

""" + EXIT_CODES

def add_parser(sub: Any, server_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    parser = sub.add_parser(
        "keys", help="create, list or revoke API keys", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="API keys of a server running with auth on (needs an admin key).")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="make a key; prints it once, last")
    create.add_argument("name", help="who or what will hold it")
    create.add_argument("--permissions", required=True, metavar="P[,P...]",
                        help="of submit_tasks, read_tasks, cancel_tasks, admin")
    create.add_argument("--expires", metavar="WHEN",
                        help="a duration from now (90d, 12h, 2w) or a time "
                        "(2026-12-31T00:00:00Z); default: never")
    server_arg(create)
    server_arg(actions.add_parser("list", help="a table of every key (never the secrets)"))
    revoke = actions.add_parser("revoke", help="stop a key from authenticating, on every node")
    revoke.add_argument("key_id")
    server_arg(revoke)


def run(args: argparse.Namespace) -> int:
    return run_action(_ACTIONS, args, {"permissions": "--permissions",
                                       "expires_at": "--expires", "id": "key_id"})


def _create(args: argparse.Namespace) -> ClientCall:
    permissions = permissions_of(args.permissions)
    expires_at = expiry(args.expires, datetime.now(UTC)) if args.expires else None

    async def go() -> None:
        async with client_of(args) as client:
            made = await client.create_key(args.name, permissions, expires_at)
        print(f"id: {made.id}\nname: {made.name}\npermissions: "
              f"{','.join(made.permissions)}\nexpires: {made.expires_at or 'never'}")
        print(made.key)  # last, alone on its line: `... | tail -1` takes it

    return go


def _list(args: argparse.Namespace) -> ClientCall:
    async def go() -> None:
        async with client_of(args) as client:
            keys = await client.keys()
        print_table(f"API keys on {args.server}",
                    ("id", "name", "prefix", "permissions", "status", "created", "by",
                     "expires"),
                    [(k.id, k.name, k.prefix + "…", ",".join(k.permissions), k.status,
                      k.created_at, k.created_by.name or k.created_by.id,
                      k.expires_at or "never") for k in keys])

    return go


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A table on stdout, as `keys list` and `users list` print theirs."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console(width=200).print(table)


def _revoke(args: argparse.Namespace) -> ClientCall:
    async def go() -> None:
        async with client_of(args) as client:
            revoked = await client.revoke_key(args.key_id)
        print(f"revoked {revoked.id} ({revoked.name}) at {revoked.revoked_at}")

    return go


def permissions_of(text: str) -> list[str]:
    """--permissions a,b: the list (the server checks each name); UsageError if empty."""
    permissions = [p.strip() for p in text.split(",") if p.strip()]
    if not permissions:
        raise UsageError("--permissions: give one or more of submit_tasks, read_tasks, "
                         "cancel_tasks, admin, separated by commas")
    return permissions


def expiry(text: str, now: datetime) -> datetime:
    """--expires: a duration from now (90d, 12h, 1w2d) or an ISO 8601 time (UTC if it names
    no timezone); ValueError naming the flag."""
    from jobledger.services.cli.schedules import parse_duration

    if text[:1].isdigit() and text[-1:] in "wdhms" and "-" not in text:
        return now + timedelta(**parse_duration(text, "--expires"))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--expires {text!r}: give a duration (90d, 12h, 2w) or a time "
                         "(2026-12-31T00:00:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_ACTIONS: dict[str, Callable[[argparse.Namespace], ClientCall]] = {
    "create": _create, "list": _list, "revoke": _revoke,
}
