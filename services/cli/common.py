"""What the CLI's command modules share: one line per failure (a bad flag, a command that
cannot start, a client call refused), the server flag, the checks done before starting."""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import socket
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobledger.services.handlers.app import App

DEFAULT_SERVER = "http://127.0.0.1:8080"


class UsageError(ValueError):
    """A flag (or its environment variable) has a bad value; the message names it."""


class StartupError(Exception):
    """The command cannot start (a port in use, a folder it cannot write); the message says
    why and what to do, in one line."""


def run_command(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command. A failure it can explain (a bad flag or variable, a bad --app, a port
    in use, a log that is locked or cannot be reached) is one line on stderr and exit status
    2 for a bad value, 1 for the rest; its traceback is printed with --debug only."""
    from jobledger.services.log.protocol import LogError

    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, StartupError, LogError) as error:  # UsageError is a ValueError
        if getattr(args, "debug", False):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2 if isinstance(error, ValueError) else 1


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


def server_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default=DEFAULT_SERVER,
                        help=f"the server's URL (default {DEFAULT_SERVER})")


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
