"""What the CLI's command modules share: environment defaults, the server flag, the exit
codes, and running a client call with one line per failure."""

from __future__ import annotations

import argparse
import asyncio
import enum
import os
import re
import sys
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, overload

DEFAULT_SERVER = "http://127.0.0.1:8080"


class Exit(enum.IntEnum):
    """The exit codes of every client command (submit, status, schedules)."""

    OK = 0  # done; with --wait: the task completed
    FAILED = 1  # the task failed, dead-lettered or was cancelled; or the server said no
    USAGE = 2  # a bad flag or argument (argparse's own code for one too)
    UNREACHABLE = 3  # no answer from the server
    TIMEOUT = 4  # --wait-timeout passed before the task finished


EXIT_CODES = f"""exit codes:
  {Exit.OK:d}  done; with --wait: the task completed
  {Exit.FAILED:d}  with --wait: the task failed, dead-lettered or was cancelled;
     or the server refused the request (no such task, a conflict)
  {Exit.USAGE:d}  a bad flag or argument (the error names the flag)
  {Exit.UNREACHABLE:d}  the server cannot be reached
  {Exit.TIMEOUT:d}  --wait-timeout passed before the task finished (it goes on running)
"""

# Answers that say the request itself was bad: a usage error, like a flag the CLI refuses.
_BAD_REQUEST = frozenset({400, 413, 422})
# msgspec ends its messages with the JSON path of the bad value; the CLI names the flag.
_JSON_PATH = re.compile(r" - at `\$[^`]*`")


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
                        help=f"the server's URL, http:// assumed without a scheme "
                        f"(default {DEFAULT_SERVER}; env JOBLEDGER_SERVER)")


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


def flag_names(parser: argparse.ArgumentParser, **fields: str) -> dict[str, str]:
    """Each request field the parser's arguments fill, by the flag the user types for it:
    {"delay_seconds": "--delay", "task_type": "task_type"}; `fields` adds fields that a
    flag is turned into under another name (run_date="--at")."""
    names = {action.dest: action.option_strings[-1] if action.option_strings else action.dest
             for action in parser._actions}
    return names | fields


def refusal_line(exc: Exception, flags: Mapping[str, str]) -> str:
    """A refused input in one line that names the flag the user typed, not the JSON path or
    the request field: "--delay: Expected `float` >= 0.0 (INVALID_ARGUMENT)"."""
    message = _JSON_PATH.sub("", str(exc))
    field: str | None = getattr(exc, "field", None)
    code = getattr(exc, "code", None)
    flag = flags.get(field) if field else None
    if field and flag is None:
        message = f"{message} ({field})"
    elif field and flag and message.startswith(field):
        message = flag + message[len(field):]
    elif flag:
        message = f"{flag}: {message}"
    return f"{message} ({code})" if code else message


def run_client(coro_fn: Callable[[], Coroutine[Any, Any, int | None]],
               flags: Mapping[str, str] | None = None) -> int:
    """Run a client call; its exit code (Exit.OK when it returns None). Each failure is
    one line on stderr and its Exit code; a bad input names the flag of its field by
    `flags` (see flag_names)."""
    from jobledger.services.client.async_client import ClientError, ServerUnreachable, WaitTimeout
    from jobledger.services.schedules.commands import ScheduleError
    from jobledger.services.write.producer import InvalidJob

    try:
        code = asyncio.run(coro_fn())
    except (InvalidJob, ScheduleError) as exc:  # refused by the client before sending
        return _fail(refusal_line(exc, flags or {}), Exit.USAGE)
    except ClientError as exc:
        bad = exc.status in _BAD_REQUEST
        return _fail(refusal_line(exc, flags or {}), Exit.USAGE if bad else Exit.FAILED)
    except WaitTimeout as exc:
        return _fail(f"timed out: {exc} (it goes on running; see `jobledger status "
                     f"{exc.task_id}`)", Exit.TIMEOUT)
    except ServerUnreachable as exc:
        return _fail(f"cannot reach the server: {str(exc) or 'no answer'}", Exit.UNREACHABLE)
    return Exit.OK if code is None else code


def _fail(line: str, code: Exit) -> Exit:
    print(f"error: {line}", file=sys.stderr)
    return code
