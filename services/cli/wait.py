"""`--wait` (of `submit` and `schedules trigger`): follow a task until it finishes, showing
its progress, and exit with the code of how it ended (common.Exit). The polling itself is
the client's (Client.wait)."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from jobledger.schemas.api import TaskDetail
from jobledger.services.cli.common import Exit
from jobledger.services.cli.output import json_text

if TYPE_CHECKING:
    from rich.console import Console

    from jobledger.services.client.async_client import Client


def add_wait_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true", help="print the task id, then its "
                        "progress until it finishes, then the task as JSON")
    parser.add_argument("--wait-timeout", type=_seconds, metavar="SECONDS",
                        help="with --wait (implied): give up after SECONDS and exit 4; the "
                        "task goes on (default: no limit)")


async def print_or_follow(client: Client, task_id: str, args: argparse.Namespace) -> Exit:
    """What a command that enqueues prints: the task id, and with --wait (or
    --wait-timeout, which has no meaning without it) the rest of follow()."""
    if args.wait or args.wait_timeout is not None:
        return await follow(client, task_id, args.wait_timeout)
    print(task_id)
    return Exit.OK


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds > 0")
    return value


async def follow(client: Client, task_id: str, timeout: float | None) -> Exit:
    """Print the task id (so it is known whatever happens next), its stages as they
    change, then the finished task as JSON; OK if it completed, else FAILED. A timeout
    raises WaitTimeout (run_client makes it Exit.TIMEOUT)."""
    from rich.console import Console

    from jobledger.schemas.lifecycle import JobStatus

    print(task_id, flush=True)
    with progress_view(Console() if sys.stdout.isatty() else None) as show:
        task = await client.wait(task_id, timeout=timeout, on_change=show)
    print(json_text(task))
    return Exit.OK if task.status == JobStatus.COMPLETED else Exit.FAILED


@contextmanager
def progress_view(console: Console | None) -> Iterator[Callable[[TaskDetail], None]]:
    """A function that shows a task's stage: on a terminal (a console given) one rich
    status line redrawn in place and gone at the end; else a plain line on stdout per
    call, for logs and pipes."""
    if console is None:
        yield lambda task: print(stage_text(task), flush=True)
        return
    with console.status("waiting for the task") as status:
        yield lambda task: status.update(stage_text(task))


def stage_text(task: TaskDetail) -> str:
    """"in_progress, attempt 2, 3/10 processed, 1 failed"; what is not known yet is left
    out ("pending")."""
    progress = task.progress
    parts: list[str] = [task.status]
    if task.attempt:
        parts.append(f"attempt {task.attempt}")
    if progress.total is not None or progress.processed:
        total = "?" if progress.total is None else progress.total
        parts.append(f"{progress.processed}/{total} processed")
    if progress.failed:
        parts.append(f"{progress.failed} failed")
    return ", ".join(parts)
