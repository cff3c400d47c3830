"""`jobledger users register|login|list|permissions|remove`, through the REST API.

A password is never a flag (a flag's value shows in the process list): it is read from the
terminal without echo, or from the first line of stdin when that is not a terminal
(`printf '%s\\n' "$PASSWORD" | jobledger users register ana`)."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from typing import Any

from jobledger.services.cli.common import (
    EXIT_CODES,
    ClientCall,
    UsageError,
    client_of,
    run_action,
)
from jobledger.services.cli.keys import permissions_of, print_table

EPILOG = """examples:
  jobledger users register ana --permissions submit_tasks,read_tasks
  jobledger users login ana
  jobledger users list
  jobledger users permissions ana --permissions read_tasks
  jobledger users remove ana

The password is asked for on the terminal, or read from the first line of stdin.
`login` prints the token last, alone on its line: send it as --api-key (or
JOBLEDGER_API_KEY) until it expires.

""" + EXIT_CODES


def add_parser(sub: Any, server_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    parser = sub.add_parser(
        "users", help="register users, sign in, list, change or remove users", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Users of a server running with auth on (docs/security.md). Managing "
        "them needs an admin key; `register` too, unless the server has --open-registration.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    register = actions.add_parser("register", help="register a user (asks for its password)")
    register.add_argument("username")
    register.add_argument("--permissions", metavar="P[,P...]",
                          help="of submit_tasks, read_tasks, cancel_tasks, admin "
                          "(default: read_tasks)")
    server_arg(register)
    login = actions.add_parser("login", help="sign in: prints a token, last")
    login.add_argument("username")
    server_arg(login)
    server_arg(actions.add_parser("list", help="a table of every user (never a password)"))
    permissions = actions.add_parser("permissions", help="set what a user may do")
    permissions.add_argument("username")
    permissions.add_argument("--permissions", required=True, metavar="P[,P...]",
                             help="of submit_tasks, read_tasks, cancel_tasks, admin")
    server_arg(permissions)
    remove = actions.add_parser("remove", help="remove a user: its tokens stop working")
    remove.add_argument("username")
    server_arg(remove)


def run(args: argparse.Namespace) -> int:
    return run_action(_ACTIONS, args, {"permissions": "--permissions", "username": "username",
                                       "password": "the password"})


def read_password(confirm: bool) -> str:
    """The password: asked twice (confirm) without echo on a terminal, else stdin's first
    line. UsageError if none is given or the two differ."""
    if not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("password: ")
        if confirm and getpass.getpass("again: ") != password:
            raise UsageError("the two passwords differ")
    if not password:
        raise UsageError("no password given (on the terminal, or as stdin's first line)")
    return password


def _register(args: argparse.Namespace) -> ClientCall:
    permissions = permissions_of(args.permissions) if args.permissions else None
    password = read_password(confirm=True)

    async def go() -> None:
        async with client_of(args) as client:
            user = await client.register_user(args.username, password, permissions)
        print(f"registered {user.username} ({user.id}): {','.join(user.permissions)}")

    return go


def _login(args: argparse.Namespace) -> ClientCall:
    password = read_password(confirm=False)

    async def go() -> None:
        async with client_of(args) as client:
            token = await client.login(args.username, password)
        print(f"expires in {token.expires_in} s")
        print(token.token)  # last, alone on its line: `... | tail -1` takes it

    return go


def _list(args: argparse.Namespace) -> ClientCall:
    async def go() -> None:
        async with client_of(args) as client:
            users = await client.users()
        print_table(f"users on {args.server}",
                    ("username", "id", "permissions", "status", "created", "by"),
                    [(u.username, u.id, ",".join(u.permissions), u.status, u.created_at,
                      u.created_by.name or u.created_by.id) for u in users])

    return go


def _permissions(args: argparse.Namespace) -> ClientCall:
    permissions = permissions_of(args.permissions)

    async def go() -> None:
        async with client_of(args) as client:
            user = await client.set_user_permissions(args.username, permissions)
        print(f"{user.username}: {','.join(user.permissions)}")

    return go


def _remove(args: argparse.Namespace) -> ClientCall:
    async def go() -> None:
        async with client_of(args) as client:
            user = await client.remove_user(args.username)
        print(f"removed {user.username} ({user.id}) at {user.removed_at}")

    return go


_ACTIONS: dict[str, Callable[[argparse.Namespace], ClientCall]] = {
    "register": _register, "login": _login, "list": _list, "permissions": _permissions,
    "remove": _remove,
}
