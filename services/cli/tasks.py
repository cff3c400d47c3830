"""`jobledger submit|status|list|cancel|requeue|history|causes`: tasks, through the REST API."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from jobledger.schemas.lifecycle import JobStatus
from jobledger.services.cli.common import (
    EXIT_CODES,
    Exit,
    UsageError,
    as_of_arg,
    call_server,
    flag_names,
    server_arg,
)
from jobledger.services.cli.output import emit, fields, format_arg, table
from jobledger.services.cli.wait import add_wait_args, print_or_follow

if TYPE_CHECKING:
    from jobledger.schemas.api import HistoryEntry, TaskDetail, TaskSummary
    from jobledger.services.client.async_client import Client

RAW = argparse.RawDescriptionHelpFormatter
STATUSES = [s.value for s in JobStatus]
# The fields of a task an enqueue flag gives, each with its flag's dest.
OPTIONS = ("priority", "delay_seconds", "schedule_at", "queue", "max_retries",
           "timeout_seconds", "idempotency_key")


def add_parsers(sub: Any) -> None:
    _submit_parser(sub)
    status = sub.add_parser("status", help="show a task", epilog=EXIT_CODES, formatter_class=RAW,
                            description="Show a task: a table of its fields, or the API's JSON.")
    status.add_argument("task_id")
    as_of_arg(status)
    _client_args(status, listing=True)
    status.set_defaults(run=status_command)
    _list_parser(sub)
    for name, text in (("cancel", "cancel tasks: waiting ones at once, running ones are asked "
                        "to stop"), ("requeue", "start finished tasks over")):
        one = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + "; a "
                             "line per task with its outcome (exit 1 if any was refused).",
                             epilog=EXIT_CODES, formatter_class=RAW)
        one.add_argument("task_ids", nargs="+", metavar="TASK_ID")
        _client_args(one)
        one.set_defaults(run=cancel_command if name == "cancel" else requeue_command)
    history = sub.add_parser("history", help="a task's events: its audit trail",
                             description="Every event of a task in log order: time, event, "
                             "attempt, actor, worker, position in the log and event id (for "
                             "`jobledger causes`).",
                             epilog=EXIT_CODES, formatter_class=RAW)
    history.add_argument("task_id")
    _client_args(history, listing=True)
    history.set_defaults(run=history_command)
    causes = sub.add_parser("causes", help="an event's chain of causes, back to its origin",
                            description="A job event (its id from `history`), then the event "
                            "that caused it, and so on back to the request or schedule fire "
                            "that started the chain.", epilog=EXIT_CODES, formatter_class=RAW)
    causes.add_argument("event_id")
    _client_args(causes, listing=True)
    causes.set_defaults(run=causes_command)


def _client_args(parser: argparse.ArgumentParser, listing: bool = False) -> None:
    if listing:
        format_arg(parser)
    server_arg(parser)


# -- submit ---------------------------------------------------------------------------------


def _submit_parser(sub: Any) -> None:
    submit = sub.add_parser(
        "submit", help="enqueue a task on a running server (or a file of them)",
        description="Enqueue one task through the REST API and print its id; with "
        "--from-file, every task of a JSON-lines file through the batch endpoint.",
        epilog=EXIT_CODES, formatter_class=RAW)
    submit.add_argument("task_type", nargs="?", help="the task type (or --type)")
    submit.add_argument("--type", dest="type_flag", metavar="TYPE",
                        help="the task type; with --from-file, of the lines that name none")
    payload = submit.add_mutually_exclusive_group()
    payload.add_argument("--payload", help="JSON payload (default null)")
    payload.add_argument("--payload-file", metavar="FILE",
                         help="a file holding the JSON payload; - reads standard input")
    submit.add_argument("--priority", type=int, help="0-255, higher first (default 128)")
    when = submit.add_mutually_exclusive_group()
    when.add_argument("--delay", type=float, dest="delay_seconds", help="run after N seconds")
    when.add_argument("--schedule-at", type=moment, metavar="TIME",
                      help="run no earlier than TIME (ISO 8601, e.g. 2026-12-24T18:00:00Z; "
                      "without a zone, UTC)")
    submit.add_argument("--queue", help='queue name (default "default")')
    submit.add_argument("--max-retries", type=int, help="default: the handler's, else 3")
    submit.add_argument("--timeout", type=float, dest="timeout_seconds",
                        help="seconds; default: the handler's, else 300")
    submit.add_argument("--idempotency-key", help="a second submit with it returns the same task")
    submit.add_argument("--from-file", metavar="FILE",
                        help="a JSON-lines file, a task per line ({\"task_type\": ..., "
                        "\"payload\": ..., ...}; - reads standard input): enqueue them all in "
                        "batches, then print how many were accepted, duplicates and rejected "
                        "(each with its line and reason). The flags above fill the fields a "
                        "line leaves out")
    submit.add_argument("--batch-size", type=int, default=1000,
                        help="with --from-file: tasks per request, 1-1000 (default 1000)")
    add_wait_args(submit)
    format_arg(submit)
    server_arg(submit)
    # A refused field is reported as the flag the user typed.
    submit.set_defaults(run=submit_command, flags=flag_names(submit, payload="--payload"))


def moment(text: str) -> datetime:
    """An ISO 8601 time (a trailing Z, or none: UTC), for --schedule-at and --since."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time like 2026-12-24T18:00:00Z") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def submit_command(args: argparse.Namespace) -> int:
    if args.from_file:
        from jobledger.services.cli.batch import submit_file

        return submit_file(args)
    task_type = task_type_of(args)
    payload = payload_of(args)
    options = enqueue_options(args)

    async def body(client: Client) -> int:
        task_id = await client.submit(task_type, payload, **options)
        return await print_or_follow(client, task_id, args)

    return call_server(args, body)


def task_type_of(args: argparse.Namespace) -> str:
    """The task type, from the positional or --type (which must agree)."""
    task_type = task_type_given(args)
    if task_type is None:
        raise UsageError("give the task type (jobledger submit TYPE, or --type TYPE)")
    return task_type


def task_type_given(args: argparse.Namespace) -> str | None:
    """The positional or --type, if either is given (they must agree)."""
    given = {t for t in (args.task_type, args.type_flag) if t is not None}
    if len(given) > 1:
        raise UsageError(f"task type {args.task_type!r} and --type {args.type_flag!r} differ: "
                         "give one")
    return given.pop() if given else None


def payload_of(args: argparse.Namespace) -> Any:
    """The payload of --payload or --payload-file (JSON; default null)."""
    if args.payload_file is None:
        return _json(args.payload or "null", "--payload")
    name = "standard input" if args.payload_file == "-" else args.payload_file
    try:
        text = sys.stdin.read() if args.payload_file == "-" else _read(args.payload_file)
    except OSError as exc:
        raise UsageError(f"--payload-file {name}: cannot read it: {exc.strerror}") from None
    return _json(text, f"--payload-file {name}")


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as file:
        return file.read()


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{where} is not JSON: {exc}") from None


def enqueue_options(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in OPTIONS if getattr(args, name) is not None}


# -- status, history ------------------------------------------------------------------------


def status_command(args: argparse.Namespace) -> int:
    async def body(client: Client) -> None:
        task = await client.get(args.task_id, as_of=args.as_of)
        emit(task, args.format, lambda: fields(task_rows(task)))

    return call_server(args, body)


def task_rows(task: TaskDetail) -> list[tuple[str, Any]]:
    """Seed 003's rows of a task (ID, Type, Status, Priority, Created, ...), and the rest."""
    progress = task.progress
    done = f"{progress.processed}/{'?' if progress.total is None else progress.total}"
    return [
        ("ID", task.task_id), ("Type", task.task_type), ("Queue", task.queue),
        ("Status", task.status), ("Priority", task.priority), ("Created", task.created_at),
        ("Scheduled", task.scheduled_at), ("Started", task.started_at),
        ("Finished", task.finished_at), ("Attempts", task.attempt),
        ("Failed attempts", task.retry_count), ("Max retries", task.max_retries),
        ("Timeout", task.timeout_seconds), ("Worker", task.worker_id),
        ("Progress", f"{done} processed, {progress.failed} failed"),
        ("Cancel requested", task.cancel_requested), ("Idempotency key", task.idempotency_key),
        ("Error", task.error), ("Payload", _json_cell(task.payload)),
        ("Result", _json_cell(task.result)),
    ]


def _json_cell(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def history_command(args: argparse.Namespace) -> int:
    async def body(client: Client) -> None:
        events = await client.history(args.task_id)
        emit(events, args.format, lambda: table(
            ("Time", "Event", "Attempt", "Actor", "Worker", "Position", "Event id"),
            map(_history_row, events)))

    return call_server(args, body)


def causes_command(args: argparse.Namespace) -> int:
    async def body(client: Client) -> None:
        events = await client.causes(args.event_id)
        emit(events, args.format, lambda: table(
            ("Time", "Event", "Task", "Attempt", "Event id", "Caused by"),
            ((e.time, e.type, _task_of(e), e.attempt, e.event_id, e.causation_id)
             for e in events)))

    return call_server(args, body)


def _task_of(entry: HistoryEntry) -> Any:
    event = entry.event
    return event.get("job_id") if isinstance(event, dict) else None


def _history_row(entry: HistoryEntry) -> tuple[Any, ...]:
    actor = ":".join(filter(None, (entry.actor.kind, entry.actor.name or entry.actor.id)))
    return (entry.time, entry.type, entry.attempt, actor, entry.worker_id,
            f"{entry.partition}:{entry.offset}", entry.event_id)


# -- list ------------------------------------------------------------------------------------


def _list_parser(sub: Any) -> None:
    listing = sub.add_parser(
        "list", help="list tasks, newest first",
        description="List tasks, newest first: a table, or the API's JSON. Page on with "
        "--starting-after the last id shown (each task once, whatever is enqueued "
        "meanwhile), or --offset.", epilog=EXIT_CODES, formatter_class=RAW)
    listing.add_argument("--status", type=str.lower, choices=STATUSES,
                         help="only tasks in this status")
    listing.add_argument("--type", dest="task_type", metavar="TYPE",
                         help="only tasks of this type")
    listing.add_argument("--queue", help="only tasks of this queue")
    listing.add_argument("--since", type=since, metavar="WHEN",
                         help="only tasks created since WHEN: a time (2026-12-24T18:00:00Z) "
                         "or a duration ago (90s, 5m, 1h30m, 2d)")
    listing.add_argument("--limit", type=int, default=100,
                         help="at most this many (default 100)")
    page = listing.add_mutually_exclusive_group()
    page.add_argument("--offset", type=int, default=0, help="skip this many first")
    page.add_argument("--starting-after", metavar="TASK_ID",
                      help="only tasks listed after this one (the last id of a page)")
    as_of_arg(listing)
    _client_args(listing, listing=True)
    listing.set_defaults(run=list_command)


def since(text: str) -> datetime:
    """--since: a time, or a duration before now ("1h30m")."""
    from jobledger.services.cli.schedules import parse_duration

    try:
        ago = timedelta(**parse_duration(text.strip()))
    except ValueError:
        return moment(text)
    return datetime.now(UTC) - ago


def list_command(args: argparse.Namespace) -> int:
    if not 0 <= args.limit:
        raise UsageError(f"--limit {args.limit}: give 0 or more")

    async def body(client: Client) -> None:
        tasks = await listed(client, args)
        emit(tasks, args.format, lambda: table(
            ("ID", "Type", "Queue", "Status", "Priority", "Created", "Updated"),
            ((t.task_id, t.task_type, t.queue, t.status, t.priority, t.created_at,
              t.updated_at) for t in tasks)))
        if tasks and len(tasks) == args.limit and sys.stdout.isatty():
            print(f"more may follow: --starting-after {tasks[-1].task_id}", file=sys.stderr)

    return call_server(args, body)


async def listed(client: Client, args: argparse.Namespace) -> list[TaskSummary]:
    """Up to --limit tasks: one page at --offset, or pages from --starting-after."""
    query = {"status": args.status, "task_type": args.task_type, "queue": args.queue,
             "as_of": args.as_of}
    if args.offset:
        page = await client.list_page(**query, limit=args.limit, offset=args.offset)
        return [t for t in page if args.since is None
                or datetime.fromisoformat(t.created_at) >= args.since]
    tasks: list[TaskSummary] = []
    if args.limit == 0:
        return tasks
    async for task in client.list(**query, since=args.since, page_size=min(args.limit, 1000),
                                  starting_after=args.starting_after):
        tasks.append(task)
        if len(tasks) == args.limit:
            break
    return tasks


# -- cancel, requeue -------------------------------------------------------------------------


def cancel_command(args: argparse.Namespace) -> int:
    from jobledger.services.write.commands import CancelOutcome

    async def cancel(client: Client, task_id: str) -> str:
        outcome = await client.cancel(task_id)
        return ("cancelled" if outcome is CancelOutcome.CANCELLED
                else "cancel requested: it is running, its handler has been asked to stop")

    return _each(args, cancel)


def requeue_command(args: argparse.Namespace) -> int:
    async def requeue(client: Client, task_id: str) -> str:
        return f"requeued: {(await client.requeue(task_id)).status}"

    return _each(args, requeue)


def _each(args: argparse.Namespace, act: Any) -> int:
    """act(client, id) for each id, a line per id with its outcome (the server's refusal
    included); FAILED if any was refused. No answer from the server stops at once."""
    from jobledger.services.client.errors import ClientError

    async def body(client: Client) -> int:
        code = Exit.OK
        for task_id in args.task_ids:
            try:
                line = await act(client, task_id)
            except ClientError as exc:
                line, code = f"refused: {exc} ({exc.code})", Exit.FAILED
            print(f"{task_id}: {line}", flush=True)
        return code

    return call_server(args, body)
