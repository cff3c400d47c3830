"""`jobledger submit --from-file jobs.jsonl`: every line a task, enqueued through the batch
endpoint --batch-size at a time, then a summary: how many were accepted, how many were
duplicates (an idempotency key that named an existing task) and which lines were rejected,
each with its reason.

A line is checked here first, with the server's own rules (producer.task_request), so a bad
line is rejected without costing a request. A batch is all or nothing on the server: when
it refuses one task of a batch (a task type it has no handler for), that line is rejected,
with every other line of the same unknown type, and the rest of the batch is sent again.
Any other failure (no answer, a server error) stops the import: what was accepted before
it stays accepted, and the summary says where it stopped.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import IO, TYPE_CHECKING, Any

from jobledger.schemas.api import MAX_BATCH, TaskRequest
from jobledger.services.cli.common import JSON_PATH, Exit, UsageError, call_server
from jobledger.services.cli.output import chosen, console, json_text, table, yaml_text
from jobledger.services.cli.tasks import enqueue_options, task_type_given

if TYPE_CHECKING:
    from rich.progress import Progress

    from jobledger.services.client.async_client import Client
    from jobledger.services.client.errors import ClientError

_TASK_INDEX = re.compile(r"^tasks\[(\d+)\]\.?(.*)$")


@dataclass
class Rejected:
    line: int
    error: str
    code: str | None
    field: str | None


@dataclass
class Imported:
    """What became of each line: accepted, duplicate (by line) and rejected."""

    accepted: dict[int, str] = field(default_factory=dict)  # line -> task id
    duplicates: dict[int, str] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)
    stopped: str | None = None  # where and why the import stopped early, if it did
    code: Exit = Exit.OK  # the exit code of a stop

    def stop(self, line: int, why: str, code: Exit) -> None:
        self.stopped, self.code = f"at line {line}: {why}", code

    def summary(self) -> dict[str, Any]:
        """The summary as JSON values: counts, and each line's outcome."""
        return {
            "accepted": len(self.accepted), "duplicates": len(self.duplicates),
            "rejected": len(self.rejected), "stopped": self.stopped,
            "tasks": [{"line": n, "task_id": t, "duplicate": n in self.duplicates}
                      for n, t in sorted({**self.accepted, **self.duplicates}.items())],
            "rejected_lines": [asdict(r) for r in self.in_order()],
        }

    def in_order(self) -> list[Rejected]:
        return sorted(self.rejected, key=lambda r: r.line)


def submit_file(args: argparse.Namespace) -> int:
    """The --from-file import; its exit code: OK, or FAILED if a line was rejected."""
    if args.payload is not None or args.payload_file is not None:
        raise UsageError("--payload and --payload-file do not go with --from-file: each line "
                         "has its own payload")
    if args.wait or args.wait_timeout is not None:
        raise UsageError("--wait does not go with --from-file")
    if not 1 <= args.batch_size <= MAX_BATCH:
        raise UsageError(f"--batch-size {args.batch_size}: give 1 to {MAX_BATCH}")
    defaults = {**enqueue_options(args), "task_type": task_type_given(args)}
    source = _open(args.from_file)
    imported = Imported()

    async def body(client: Client) -> int:
        with source, _progress(_count(args.from_file)) as progress:
            await _send_all(client, _tasks(source, defaults, imported), args.batch_size,
                            imported, progress)
        _print(imported, args.format)
        if imported.stopped:
            print(f"error: stopped {imported.stopped}", file=sys.stderr)
            return imported.code
        return Exit.FAILED if imported.rejected else Exit.OK

    return call_server(args, body)


def _open(path: str) -> IO[str]:
    if path == "-":
        return sys.stdin
    try:
        return open(path, encoding="utf-8")  # noqa: SIM115  (closed by submit_file's body)
    except OSError as exc:
        raise UsageError(f"--from-file {path}: cannot read it: {exc.strerror}") from None


def _count(path: str) -> int | None:
    """Lines in the file, for the progress bar (None for standard input)."""
    if path == "-":
        return None
    with open(path, "rb") as file:
        return sum(1 for _ in file)


def _tasks(source: IO[str], defaults: dict[str, Any],
           imported: Imported) -> Iterator[tuple[int, TaskRequest | None]]:
    """(line number, task) per line; None for a blank line or one rejected here (added to
    imported.rejected)."""
    from jobledger.services.write.producer import InvalidJob, task_request

    for number, text in enumerate(source, start=1):
        if not text.strip():
            yield number, None
            continue
        try:
            fields = {**{k: v for k, v in defaults.items() if v is not None}, **_object(text)}
            if "task_type" not in fields:
                raise InvalidJob("no task_type: give one in the line, or --type", "task_type")
            task = task_request(fields.pop("task_type"), fields.pop("payload", None), **fields)
        except InvalidJob as exc:
            imported.rejected.append(Rejected(number, JSON_PATH.sub("", str(exc)), exc.code,
                                              exc.field))
            yield number, None
        else:
            yield number, task


def _object(text: str) -> dict[str, Any]:
    from jobledger.services.write.producer import InvalidJob

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidJob(f"not JSON: {exc}", None, "MALFORMED_JSON") from None
    if not isinstance(value, dict):
        raise InvalidJob(f"not a JSON object: {text.strip()[:60]}", None, "INVALID_ARGUMENT")
    return value


async def _send_all(client: Client, tasks: Iterator[tuple[int, TaskRequest | None]],
                    size: int, imported: Imported, progress: Progress | None) -> None:
    """Send the valid lines `size` at a time, until one fails for a reason that is not one
    line's fault (imported.stopped then says why)."""
    unknown: set[str] = set()  # task types the server refused: their lines are rejected
    chunk: list[tuple[int, TaskRequest]] = []
    for number, task in tasks:
        if progress is not None:
            progress.advance(progress.task_ids[0])
        if task is not None:
            chunk.append((number, task))
        if len(chunk) == size:
            if not await _flush(client, chunk, imported, unknown):
                return
            chunk = []
    if chunk:
        await _flush(client, chunk, imported, unknown)


async def _flush(client: Client, chunk: list[tuple[int, TaskRequest]], imported: Imported,
                 unknown: set[str]) -> bool:
    """Send one chunk; False (and imported.stopped) if the import must stop there."""
    from jobledger.services.client.errors import ClientError, ServerUnreachable

    try:
        await _send(client, _pending(chunk, unknown, imported), imported, unknown)
    except ServerUnreachable as exc:
        imported.stop(chunk[0][0], f"cannot reach the server: {exc}", Exit.UNREACHABLE)
        return False
    except ClientError as exc:
        imported.stop(chunk[0][0], f"{exc} ({exc.code})", Exit.FAILED)
        return False
    return True


async def _send(client: Client, chunk: list[tuple[int, TaskRequest]], imported: Imported,
                unknown: set[str]) -> None:
    """One batch, resent without the lines the server refuses one by one."""
    from jobledger.services.client.errors import ClientError

    while chunk:
        try:
            answer = await client.submit_batch([task for _, task in chunk])
        except ClientError as exc:
            line = _refused_line(exc, chunk)
            if line is None:
                raise
            if exc.code == "UNKNOWN_TASK_TYPE":
                unknown.add(chunk[line][1].task_type)
            chunk = _pending(chunk, unknown, imported, refused=(line, exc))
            continue
        duplicates = set(answer.duplicates)
        for i, ((number, _), task_id) in enumerate(zip(chunk, answer.task_ids, strict=True)):
            (imported.duplicates if i in duplicates else imported.accepted)[number] = task_id
        return


def _pending(chunk: list[tuple[int, TaskRequest]], unknown: set[str], imported: Imported,
             refused: tuple[int, ClientError] | None = None) -> list[tuple[int, TaskRequest]]:
    """The chunk without the refused task and the tasks of types the server does not know
    (each added to imported.rejected)."""
    keep = []
    for i, (number, task) in enumerate(chunk):
        if refused is not None and i == refused[0]:
            exc = refused[1]
            imported.rejected.append(Rejected(number, _line_error(exc), exc.code,
                                              _line_field(exc.field)))
        elif task.task_type in unknown:
            imported.rejected.append(Rejected(
                number, f"unknown task type {task.task_type!r}", "UNKNOWN_TASK_TYPE",
                "task_type"))
        else:
            keep.append((number, task))
    return keep


def _refused_line(exc: ClientError, chunk: list[tuple[int, TaskRequest]]) -> int | None:
    """The position in the chunk of the task the refusal names (tasks[3].x), if any."""
    match = _TASK_INDEX.match(exc.field or "")
    if exc.status >= 500 or match is None or int(match[1]) >= len(chunk):
        return None
    return int(match[1])


def _line_field(batch_field: str | None) -> str | None:
    """tasks[3].priority -> priority."""
    match = _TASK_INDEX.match(batch_field or "")
    return (match[2] or None) if match else batch_field


def _line_error(exc: ClientError) -> str:
    return JSON_PATH.sub("", str(exc))


def _progress(total: int | None) -> AbstractContextManager[Progress | None]:
    """A rich progress bar on stderr when it is a terminal (None otherwise)."""
    if not sys.stderr.isatty():
        return nullcontext()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    progress = Progress("lines", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=console(stderr=True), transient=True)
    progress.add_task("lines", total=total)
    return progress


def _print(imported: Imported, given: str | None) -> None:
    summary = imported.summary()
    match chosen(given):
        case "json":
            print(json_text(summary))
        case "yaml":
            print(yaml_text(summary), end="")
        case _:
            print(f"accepted {summary['accepted']}, duplicates {summary['duplicates']}, "
                  f"rejected {summary['rejected']}")
            if imported.rejected:
                console().print(table(("Line", "Rejected because"), (
                    (r.line, _reason(r)) for r in imported.in_order())))
            if imported.stopped:
                print(f"stopped {imported.stopped}; the lines after it were not sent")


def _reason(rejected: Rejected) -> str:
    """The error, naming the field when it does not already."""
    error, name = rejected.error, rejected.field
    text = error if not name or error.startswith(name) else f"{name}: {error}"
    return f"{text} ({rejected.code})" if rejected.code else text
