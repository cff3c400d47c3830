"""What the CLI's command modules share: environment defaults, the server flag, and
running a client call with one line per failure."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, overload

DEFAULT_SERVER = "http://127.0.0.1:8080"


class UsageError(ValueError):
    """A flag (or its environment variable) has a bad value; the message names it."""


@overload
def env(name: str, default: str) -> str: ...
@overload
def env(name: str, default: None) -> str | None: ...
def env(name: str, default: str | None) -> str | None:
    """JOBLEDGER_<name>, else the default."""
    return os.environ.get(f"JOBLEDGER_{name}", default)


def env_int(name: str) -> int | None:
    value = os.environ.get(f"JOBLEDGER_{name}")
    return int(value) if value else None


def env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(f"JOBLEDGER_{name}")
    if value is None:
        return default
    return value.strip().lower() not in ("0", "false", "no", "off", "")


def server_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default=env("SERVER", DEFAULT_SERVER),
                        help=f"the server's URL (default {DEFAULT_SERVER}; env JOBLEDGER_SERVER)")


def allow_unknown_task_types_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-unknown-task-types", action="store_true",
                        default=env_flag("ALLOW_UNKNOWN_TASK_TYPES", False),
                        help="accept tasks of types no handler is known for (they wait for "
                        "one; by default they are refused with UNKNOWN_TASK_TYPE; env "
                        "JOBLEDGER_ALLOW_UNKNOWN_TASK_TYPES=1)")


def warn_without_task_types(handlers: object) -> None:
    """`serve` with no handlers: every task type is unknown to it (one line on stderr)."""
    if not handlers:
        print("jobledger: warning: no task types: this server has no handlers "
              "(give --app module:attribute, or --demo)", file=sys.stderr)


def run_client(coro_fn: Callable[[], Coroutine[Any, Any, Any]]) -> int:
    """Run a client call; a refusal or an unreachable server is one line on stderr."""
    from jobledger.services.client.async_client import ClientError

    try:
        asyncio.run(coro_fn())
    except ClientError as exc:
        print(f"error: {exc} ({exc.code})", file=sys.stderr)
        return 1
    except OSError as exc:  # ServerUnreachable among them
        print(f"error: cannot reach the server: {exc}", file=sys.stderr)
        return 1
    return 0
