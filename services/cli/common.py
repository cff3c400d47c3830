"""What the CLI's command modules share: one line per failure (a bad flag, a command that
cannot start, a client call refused), the exit codes, the server flag, the checks done
before starting."""

from __future__ import annotations

import argparse
import asyncio
import enum
import errno
import os
import re
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobledger.api.ws import HubConfig
    from jobledger.services.client.async_client import Client
    from jobledger.services.handlers.app import App

DEFAULT_SERVER = "http://127.0.0.1:8080"
ClientCall = Callable[[], Coroutine[Any, Any, int | None]]


class Exit(enum.IntEnum):
    """The exit codes of every command. The client commands (submit, status, list,
    schedules, ...) use 0-4; the server commands (serve, api, worker, replay) 0, 1, 2 and 5;
    the audit commands (verify, anchor, export, import, migrate) 0, 1, 2, 5 and 6."""

    OK = 0  # done; with --wait: the task completed
    FAILED = 1  # the task failed, dead-lettered or was cancelled; or the server said no
    USAGE = 2  # a bad flag or argument (argparse's own code for one too)
    UNREACHABLE = 3  # no answer from the server
    TIMEOUT = 4  # --wait-timeout passed before the task finished
    DATA = 5  # a data file is damaged, or does not match the others (DataFileError)
    TAMPERED = 6  # verify, anchor: the log does not match its hash chain (or the anchor)


SERVER_EXIT_CODES = f"""exit codes:
  {Exit.OK:d}  stopped (SIGINT, SIGTERM); replay: done
  {Exit.FAILED:d}  it cannot start (a port in use, a locked log, a broker it cannot reach)
  {Exit.USAGE:d}  a bad flag or argument (the error names the flag)
  {Exit.DATA:d}  a data file is damaged, or does not match the others (a log lost or
     emptied beside read models that applied it): the error names the file and
     what to do
"""

EXIT_CODES = f"""exit codes:
  {Exit.OK:d}  done; with --wait: the task completed
  {Exit.FAILED:d}  with --wait: the task failed, dead-lettered or was cancelled;
     or the server refused the request (no such task, a conflict), or one
     id of cancel/requeue, one line of submit --from-file; cluster-status:
     the server is degraded
  {Exit.USAGE:d}  a bad flag or argument (the error names the flag)
  {Exit.UNREACHABLE:d}  the server cannot be reached
  {Exit.TIMEOUT:d}  --wait-timeout passed before the task finished (it goes on running)
"""

# Answers that say the request itself was bad: a usage error, like a flag the CLI refuses.
_BAD_REQUEST = frozenset({400, 413, 422})
# msgspec ends its messages with the JSON path of the bad value; the CLI names the flag.
JSON_PATH = re.compile(r" - at `\$[^`]*`")


class UsageError(ValueError):
    """A flag (or its environment variable) has a bad value; the message names it."""


class StartupError(Exception):
    """The command cannot start (a port in use, a folder it cannot write); the message says
    why and what to do, in one line."""


def run_command(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command. A failure it can explain (a bad flag or variable, a bad --app, a port
    in use, a log that is locked or cannot be reached, a damaged data file) is one line on
    stderr and exit status 2 for a bad value, 5 for a data file (Exit.DATA), 1 for the
    rest; its traceback is printed with --debug only."""
    from jobledger.services.log.protocol import DataFileError, LogError

    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `jobledger list | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 141  # 128 + SIGPIPE, as a shell reports a command that a pipe stopped
    except (ValueError, StartupError, LogError) as error:  # UsageError is a ValueError
        if getattr(args, "debug", False):
            raise
        print(f"error: {error}", file=sys.stderr)
        if isinstance(error, DataFileError):
            return Exit.DATA
        return Exit.USAGE if isinstance(error, ValueError) else Exit.FAILED


# How long a failed command waits for threads it leaves behind before it exits anyway.
LINGER_SECONDS = 3.0


def exit_promptly(code: int, error: BaseException | None = None) -> None:
    """Once a command has failed (status `code`, or raising `error`): if threads it started
    outlive it, wait LINGER_SECONDS for them, then end the process with that status
    (printing the error's traceback first, as Python would). Python waits for every
    non-daemon thread before it exits, so one left running (the connection of a start that
    failed half-way) would keep a failed `serve` alive for good instead of exiting."""
    deadline = time.monotonic() + LINGER_SECONDS
    for thread in _lingering():
        thread.join(max(0.0, deadline - time.monotonic()))
    if not _lingering():
        return
    if error is not None:
        traceback.print_exception(error)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _lingering() -> list[threading.Thread]:
    current = threading.current_thread()
    return [t for t in threading.enumerate() if t is not current and not t.daemon and t.is_alive()]


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, before anything else starts: a port in use is one line
    naming --port, and the banner waits for the port (api/app.py:run_server)."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: give a port from 0 to 65535")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise StartupError(_cannot_listen(host, port, error)) from error
    return sock


def _cannot_listen(host: str, port: int, error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return (f"{host}:{port} is already in use by another process: stop it, or choose "
                "another --port")
    if error.errno == errno.EACCES:
        return (f"no permission to listen on port {port}: choose a --port from 1024 up, or "
                "run as a user allowed to")
    if error.errno == errno.EADDRNOTAVAIL or isinstance(error, socket.gaierror):
        return (f"--host {host}: not an address of this machine ({error.strerror}): give one "
                "of its addresses, 127.0.0.1 or 0.0.0.0")
    return f"cannot listen on {host}:{port}: {error.strerror or error}"


def check_data_file(path: Path, flag: str) -> None:
    """Fail in one line naming the flag unless a data file can be made or opened at path:
    its folder exists and this user can write there. Checked before anything starts, so the
    line says which flag to change rather than what sqlite could not open."""
    folder = path.parent
    if path.is_dir():
        raise StartupError(f"{flag} {path} is a folder: give a file in it, such as "
                           f"{path / 'jobledger.db'}")
    if not folder.is_dir():
        raise StartupError(f"{flag} {path}: {folder} is not a folder that exists: create it, "
                           f"or choose another {flag}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StartupError(f"{flag} {path}: this user cannot write in {folder}: give it the "
                           f"right to, or choose another {flag}")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise StartupError(f"{flag} {path}: this user cannot read and write it: give it the "
                           f"right to, or choose another {flag}")


def app_of(args: argparse.Namespace, required: bool) -> App:
    """The handlers of a command's --demo and --app. Required: a worker without any is a
    usage error."""
    from jobledger.services.handlers.app import App, load_app
    from jobledger.services.handlers.demo import demo

    app = App()
    if args.demo:
        app.include(demo)
    if args.app:
        app.include(load_app(args.app))
    if required and not app.handlers:
        raise UsageError("--app: give your handlers as module:attribute (or --demo)")
    return app


def as_of_arg(parser: argparse.ArgumentParser) -> None:
    """--as-of: answer as the server's state was at a past moment (docs/audit.md)."""
    parser.add_argument("--as-of", metavar="WHEN", help="as it was at WHEN: an RFC 3339 time "
                        "(2026-03-10T02:13:00Z) or a log position (jobs/0:120,...), as the "
                        "server's X-As-Of-Position header gives it")


def server_arg(parser: argparse.ArgumentParser) -> None:
    """The flags of a command that calls the server: --server and --api-key."""
    from jobledger.services.cli.auth import api_key_arg

    parser.add_argument("--server", default=DEFAULT_SERVER,
                        help=f"the server's URL, http:// assumed without a scheme "
                        f"(default {DEFAULT_SERVER})")
    api_key_arg(parser)


def client_of(args: argparse.Namespace) -> Client:
    """The client of the server and the API key the command's flags name."""
    from jobledger.services.cli.auth import api_key_of
    from jobledger.services.client.async_client import Client

    return Client(args.server, api_key=api_key_of(args))


def allow_unknown_task_types_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-unknown-task-types", action="store_true",
                        help="accept tasks of types no handler is known for (they wait for "
                        "one; by default they are refused with UNKNOWN_TASK_TYPE)")


def input_limit_args(parser: argparse.ArgumentParser) -> None:
    """The limits of what the API accepts that a deployment may tune (docs/api.md, Limits)."""
    from jobledger.schemas.api import DEFAULT_MAX_PAYLOAD_DEPTH, HIGHEST_MAX_PAYLOAD_DEPTH
    from jobledger.schemas.schedules import DEFAULT_MIN_INTERVAL_SECONDS

    def depth(text: str) -> int:
        value = int(text)
        if not 1 <= value <= HIGHEST_MAX_PAYLOAD_DEPTH:
            raise argparse.ArgumentTypeError(
                f"give 1 to {HIGHEST_MAX_PAYLOAD_DEPTH} (arrays and objects), got {value}")
        return value

    def seconds(text: str) -> float:
        value = float(text)
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"give a number of seconds above 0, got {text!r}")
        return value

    parser.add_argument("--max-payload-depth", type=depth, default=DEFAULT_MAX_PAYLOAD_DEPTH,
                        metavar="N",
                        help="arrays and objects a task's or schedule's payload may nest; "
                        f"deeper is refused with PAYLOAD_TOO_DEEP (default "
                        f"{DEFAULT_MAX_PAYLOAD_DEPTH}, at most {HIGHEST_MAX_PAYLOAD_DEPTH})")
    parser.add_argument("--min-schedule-interval", type=seconds,
                        default=DEFAULT_MIN_INTERVAL_SECONDS, metavar="SECONDS",
                        help="the shortest interval trigger a schedule may have; shorter is "
                        f"refused with INVALID_TRIGGER (default {DEFAULT_MIN_INTERVAL_SECONDS:g})")


def ws_max_message_arg(parser: argparse.ArgumentParser) -> None:
    from jobledger.schemas.api import WS_MAX_MESSAGE_BYTES

    parser.add_argument("--ws-max-message-bytes", type=_message_bytes, metavar="BYTES",
                        default=WS_MAX_MESSAGE_BYTES,
                        help="the largest message a WebSocket client may send; a larger one "
                        f"closes its connection with 1009 (default {WS_MAX_MESSAGE_BYTES})")


def _message_bytes(text: str) -> int:
    if not text.isdigit() or int(text) < 1024:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of bytes >= 1024")
    return int(text)


def hub_config(args: argparse.Namespace) -> HubConfig:
    """The WebSocket hub's settings the flags give."""
    from jobledger.api.ws import HubConfig

    return HubConfig(max_message_bytes=args.ws_max_message_bytes)


NO_TASK_TYPES = ("jobledger: warning: no task types: this server has no handlers "
                 "(give --app module:attribute, or --demo)")


def warn_without_task_types(handlers: object) -> None:
    """`serve` with no handlers: every task type is unknown to it (one line on stderr)."""
    if not handlers:
        print(NO_TASK_TYPES, file=sys.stderr)


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
    message = JSON_PATH.sub("", str(exc))
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


ClientBody = Callable[["Client"], Coroutine[Any, Any, int | None]]


def call_server(args: argparse.Namespace, body: ClientBody) -> int:
    """Run body(client) with the command's client (client_of: --server and --api-key)
    through run_client: its exit code, each failure one line."""
    async def go() -> int | None:
        async with client_of(args) as client:
            return await body(client)

    return run_client(go, getattr(args, "flags", None))


def run_client(coro_fn: Callable[[], Coroutine[Any, Any, int | None]],
               flags: Mapping[str, str] | None = None) -> int:
    """Run a client call; its exit code (Exit.OK when it returns None). Each failure is
    one line on stderr and its Exit code; a bad input names the flag of its field by
    `flags` (see flag_names)."""
    from jobledger.services.client.errors import (
        ClientError,
        ResyncRequired,
        ServerUnreachable,
        WaitTimeout,
    )
    from jobledger.services.schedules.commands import ScheduleError
    from jobledger.services.write.producer import InvalidJob

    try:
        code = asyncio.run(coro_fn())
    except (InvalidJob, ScheduleError) as exc:  # refused by the client before sending
        return _fail(refusal_line(exc, flags or {}), Exit.USAGE)
    except ClientError as exc:
        bad = exc.status in _BAD_REQUEST
        line = refusal_line(exc, flags or {})
        if exc.status == 401 and not _SIGN_IN.search(line):
            line += "; give an API key with --api-key or JOBLEDGER_API_KEY"  # docs/security.md
        return _fail(line, Exit.USAGE if bad else Exit.FAILED)
    except WaitTimeout as exc:
        return _fail(f"timed out: {exc} (it goes on running; see `jobledger status "
                     f"{exc.task_id}`)", Exit.TIMEOUT)
    except ServerUnreachable as exc:
        return _fail(f"cannot reach the server: {str(exc) or 'no answer'}", Exit.UNREACHABLE)
    except ResyncRequired as exc:
        return _fail(str(exc), Exit.FAILED)
    return Exit.OK if code is None else code


def run_action(actions: Mapping[str, Callable[[argparse.Namespace], ClientCall]],
               args: argparse.Namespace, flags: Mapping[str, str] | None = None) -> int:
    """Carry out a command's action (`schedules add`, `keys create`): the exit code. A flag
    the CLI reads itself (--every, --expires) and refuses is a usage error, in one line."""
    try:
        call = actions[args.action](args)
    except ValueError as exc:
        return _fail(str(exc), Exit.USAGE)
    return run_client(call, flags)


# A refused sign-in (`users login`): no key would help.
_SIGN_IN = re.compile(r"wrong username or password")


def _fail(line: str, code: Exit) -> Exit:
    print(f"error: {line}", file=sys.stderr)
    return code
