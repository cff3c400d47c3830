"""`jobledger watch`: a live stream of task updates over the WebSocket, resumable.

A line per update (or, with --format json, the WebSocket's task_update message as one JSON
object per line). The client reconnects by itself from the last cursor, so a server
restart loses nothing. When it stops (Ctrl-C, or the server gone for --reconnect-for
seconds), it prints the cursor of the last update on stderr: `--resume-from` it later to
get every change since, then live ones.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

import msgspec

from jobledger.services.cli.common import EXIT_CODES, call_server, server_arg
from jobledger.services.cli.output import chosen, console, format_arg, yaml_text
from jobledger.services.cli.tasks import STATUSES

if TYPE_CHECKING:
    from rich.text import Text

    from jobledger.schemas.api import TaskUpdate
    from jobledger.services.client.async_client import Client

STATUS_STYLES = {"completed": "green", "failed": "red", "dead_letter": "bold red",
                 "cancelled": "yellow", "in_progress": "cyan", "pending": "", "scheduled": "dim"}


def add_parsers(sub: Any) -> None:
    watch = sub.add_parser(
        "watch", help="a live, resumable stream of task updates",
        description="Print every change of every matching task as it happens, until Ctrl-C; "
        "then the cursor to resume from (stderr). Reconnects by itself across server "
        "restarts without losing an update.", epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    watch.add_argument("--type", dest="task_types", nargs="+", metavar="TYPE",
                       help="only tasks of these types")
    watch.add_argument("--status", dest="statuses", nargs="+", type=str.lower,
                       choices=STATUSES, metavar="STATUS",
                       help=f"only updates to these statuses ({', '.join(STATUSES)})")
    watch.add_argument("--queue", dest="queues", nargs="+", metavar="QUEUE",
                       help="only tasks of these queues")
    watch.add_argument("--resume-from", metavar="CURSOR",
                       help="first every change since this cursor (printed when a watch stops)")
    watch.add_argument("--reconnect-for", type=float, default=60.0, metavar="SECONDS",
                       help="give up after this long without a connection (default 60)")
    format_arg(watch)
    server_arg(watch)
    watch.set_defaults(run=watch_command)


def watch_command(args: argparse.Namespace) -> int:
    async def body(client: Client) -> None:
        updates = client.watch(task_types=args.task_types, statuses=args.statuses,
                               queues=args.queues, resume_from=args.resume_from,
                               reconnect_for=args.reconnect_for)
        try:
            async with updates:
                async for update in updates:
                    show(update, args.format)
        finally:  # Ctrl-C, or the server gone: where to go on from
            if updates.cursor is not None:
                print(f"cursor: {updates.cursor} (resume with: jobledger watch --resume-from "
                      f"{updates.cursor})", file=sys.stderr, flush=True)

    return call_server(args, body)


def show(update: TaskUpdate, given: str | None) -> None:
    match chosen(given):
        case "table":
            console().print(line(update))
        case "json":
            print(msgspec.json.encode(update).decode(), flush=True)
        case _:
            print("---\n" + yaml_text(update), end="", flush=True)


def line(update: TaskUpdate) -> Text:
    """time, status (coloured), type, id, and progress or retries when there are any."""
    from rich.text import Text

    task = update.task
    text = Text(f"{task.updated_at} ")
    text.append(f"{task.status:<11}", style=STATUS_STYLES.get(task.status, ""))
    text.append(f" {task.task_type} {task.task_id}")
    progress = task.progress
    if progress.total is not None or progress.processed:
        total = "?" if progress.total is None else progress.total
        text.append(f" {progress.processed}/{total}", style="dim")
    if task.retry_count:
        text.append(f" (failed attempts: {task.retry_count})", style="dim")
    return text
