"""`jobledger logs ID [--attempt N] [--follow]`: the log lines a task's handler wrote, one
run (attempt) at a time, levelled and coloured on a terminal.

--follow prints the lines as they arrive until the run ends. It subscribes to the task's
changes over WS /ws (channel `task`, told of every new log line and state change) and reads
the run (GET /api/v1/runs/{id}) at each one, so it makes no request while nothing happens.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

import msgspec

from jobledger.services.cli.common import EXIT_CODES, Exit, call_server, server_arg
from jobledger.services.cli.output import chosen, console, emit, format_arg, yaml_text

if TYPE_CHECKING:
    from rich.text import Text

    from jobledger.schemas.api import RunDetail, RunLog
    from jobledger.services.client.async_client import Client

LEVEL_STYLES = {"TRACE": "dim", "INFO": "green", "WARN": "yellow", "ERROR": "red",
                "FATAL": "bold red"}


def add_parsers(sub: Any) -> None:
    logs = sub.add_parser(
        "logs", help="a task's log lines", epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The log lines of one run of a task (its latest attempt, or --attempt): "
        "time, level, message and details. With --follow, the lines as they come until the "
        "run ends (it waits for a task that has not started); with --format json, one JSON "
        "object per line then.")
    logs.add_argument("task_id")
    logs.add_argument("--attempt", type=int, help="this attempt's run (default: the latest)")
    logs.add_argument("--follow", "-f", action="store_true",
                      help="print new lines until the run ends")
    format_arg(logs)
    server_arg(logs)
    logs.set_defaults(run=logs_command)


def logs_command(args: argparse.Namespace) -> int:
    async def body(client: Client) -> int:
        if args.follow:
            return await follow(client, args.task_id, args.attempt, args.format)
        lines = await client.logs(args.task_id, args.attempt)
        emit(lines, args.format, lambda: _text(lines))
        return Exit.OK

    return call_server(args, body)


async def follow(client: Client, task_id: str, attempt: int | None, given: str | None) -> int:
    """Print the run's lines as they come until it ends; OK if it completed, else FAILED."""
    from jobledger.schemas.lifecycle import RunStatus

    shown: set[str] = set()
    signals = client.task_signals(task_id)
    async for _ in signals:
        run = await _run(client, task_id, attempt)
        new = [line for line in (run.logs if run else []) if line.id not in shown]
        shown.update(line.id for line in new)
        _print_lines(new, given)
        if run is not None and run.status != RunStatus.RUNNING:
            await signals.aclose()
            return Exit.OK if run.status == RunStatus.COMPLETED else Exit.FAILED
    raise AssertionError("task_signals never ends")


async def _run(client: Client, task_id: str, attempt: int | None) -> RunDetail | None:
    """The run to follow (None while the task has not started it)."""
    from jobledger.services.client.errors import NotFound

    if attempt is None:
        attempt = (await client.get(task_id)).attempt  # NotFound: no such task
        if attempt == 0:
            return None
    try:
        return await client.run(f"{task_id}.{attempt}")
    except NotFound:
        return None  # that attempt has not started yet


def _print_lines(lines: list[RunLog], given: str | None) -> None:
    """New lines as they come: coloured text, or a JSON object (a YAML document) each."""
    match chosen(given):
        case "table":
            if lines:
                console().print(_text(lines))
        case "json":
            for line in lines:
                print(msgspec.json.encode(line).decode())
        case _:
            for line in lines:
                print("---\n" + yaml_text(line), end="")
    sys.stdout.flush()


def _text(lines: list[RunLog]) -> Text:
    """A line per log line: time, level (coloured), message, details as JSON."""
    from rich.text import Text

    shown = []
    for line in lines:
        text = Text(f"{line.created_at} ")
        text.append(f"{line.level:<5}", style=LEVEL_STYLES.get(line.level, ""))
        text.append(f" {line.message}")
        if line.details:
            text.append(f" {msgspec.json.encode(line.details).decode()}", style="dim")
        shown.append(text)
    return Text("\n").join(shown)
