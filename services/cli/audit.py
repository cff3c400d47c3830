"""`jobledger verify|anchor|export|import|migrate|upgrade-chain`: the audit commands, over a
SQLite log file (`--db`, read-only but for import, migrate and upgrade-chain) or, for
verify, anchor and export, Kafka topics (`--broker`). docs/audit.md walks through them."""

from __future__ import annotations

import argparse
import asyncio
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobledger.services.cli import kafka as kafka_cli
from jobledger.services.cli.common import Exit, UsageError

RAW = argparse.RawDescriptionHelpFormatter
AUDIT_EXIT_CODES = f"""exit codes:
  {Exit.OK:d}  done; verify: every partition's chain holds (and extends --anchor)
  {Exit.FAILED:d}  it cannot run (a broker it cannot reach, a log in use)
  {Exit.USAGE:d}  a bad flag or argument, or a broken import file (the error names the
     flag, or the file's line)
  {Exit.DATA:d}  the log file is damaged (SQLite cannot read it)
  {Exit.TAMPERED:d}  verify, anchor: a partition's chain breaks (a record changed,
     missing, reordered or unreadable), or the log does not extend --anchor
"""


def add_parsers(sub: Any) -> None:
    def command(name: str, text: str, run: Callable[[argparse.Namespace], int],
                description: str, kafka: bool = True) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(
            name, help=text, description=textwrap.fill(description, 79), epilog=AUDIT_EXIT_CODES,
            formatter_class=RAW)
        parser.add_argument("--db", type=Path, default=Path("jobledger.db"),
                            help="the log file (default ./jobledger.db)")
        if kafka:
            _kafka_read_args(parser)
        parser.set_defaults(run=run)
        return parser

    verify = command("verify", "check the log's hash chain", verify_command,
                     "Recompute every partition's hash chain and print, per partition, OK "
                     "with its head link, or the first bad offset and what is wrong: a "
                     "changed, missing or reordered record, or one this build cannot read "
                     "(a bad upcast). Progress goes to stderr.")
    _range_args(verify)
    verify.add_argument("--anchor", help="a line `jobledger anchor` printed: also prove the "
                        "log still extends it (checks from offset 0)")
    command("anchor", "print the head of every partition's chain as one line", anchor_command,
            "Verify the whole log, then print one line with every partition's record count "
            "and head link, and a checksum of the line: publish it elsewhere (a ticket, a "
            "notary); `verify --anchor LINE` later proves the log still extends it.")
    export = command("export", "write the log's records as JSON lines to stdout",
                     export_command,
                     "One JSON line per record: its topic, partition, offset, key, time, chain "
                     "link and envelope (its bytes as stored). Read-only: works on a live "
                     "server's log. Progress goes to stderr.")
    _range_args(export)
    export.add_argument("--topic", help="only this topic's records (jobs, logs, workers, "
                        "schedules, security)")
    export.add_argument("--task", help="only this task's events (keyed by its id)")
    imp = command("import", "load an export file into a new log", import_command,
                  "Check that the file is a whole export whose every line gives its chain "
                  "link, then append its records at the same partitions and offsets to a "
                  "new log (--db). A broken file is refused, naming the line; nothing is "
                  "written.", kafka=False)
    imp.add_argument("file", type=Path, help="the export file (jobledger export > FILE)")
    migrate = command("migrate", "copy a stopped embedded log into Kafka topics",
                      migrate_command,
                      "Copy every record of the log file (--db), stopped, into the Kafka "
                      "topics: same partitions, offsets, keys and event ids, so the chain "
                      "continues. Rerun it after a crash: it checks what the topics hold and "
                      "copies the rest. Then run the Kafka mode with --partitioner crc32.",
                      kafka=False)
    migrate.add_argument("--to", required=True, help="kafka://HOST:PORT[,HOST:PORT...]")
    migrate.add_argument("--topic-prefix", default="jobledger.",
                         help="prefix of every topic name (default 'jobledger.')")
    migrate.add_argument("--replication-factor", type=int, default=1,
                         help="replicas of the topics it creates (default 1; 3 in production)")
    migrate.add_argument("--idempotence", action=argparse.BooleanOptionalAction, default=True,
                         help="the idempotent producer (default on; off only for brokers "
                         "that cannot do it)")
    command("upgrade-chain", "chain a log written before the hash chain", upgrade_command,
            "Give every record of a log written before the hash chain its link (serve does "
            "it on start too). The links prove the records unchanged since the upgrade, "
            "not before it.", kafka=False)


def _kafka_read_args(parser: argparse.ArgumentParser) -> None:
    """Which Kafka topics to read instead of --db: readers need no more than that."""
    group = parser.add_argument_group("Kafka")
    group.add_argument("--broker", help="kafka://HOST:PORT[,HOST:PORT...]: read the Kafka "
                       "topics instead of --db")
    group.add_argument("--topic-prefix", default="jobledger.",
                       help="prefix of every topic name (default 'jobledger.')")
    parser.set_defaults(replication_factor=1, min_insync_replicas=None, idempotence=True)


def _range_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="start", type=_time_or_offset, metavar="TIME|POS",
                        help="from this RFC 3339 time, or offset of every partition")
    parser.add_argument("--to", dest="stop", type=_time_or_offset, metavar="TIME|POS",
                        help="up to (before) this time, or offset of every partition")


def _time_or_offset(text: str) -> datetime | int:
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an RFC 3339 time nor an offset") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@contextmanager
def progress(what: str) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """A progress bar on stderr, if it is a terminal: (advance by n, set the total)."""
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True,
                  disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(what, total=None)
        yield (lambda n: bar.advance(task, n)), (lambda n: bar.update(task, total=n))


async def _source(args: argparse.Namespace) -> Any:
    from jobledger.services.audit.source import Source

    if getattr(args, "broker", None):
        return await Source.kafka(kafka_cli.kafka_config(args))
    if not args.db.exists():
        raise UsageError(f"--db: no log at {args.db}")
    return await Source.sqlite(args.db)


async def _verified(args: argparse.Namespace,
                    anchor: str | None) -> tuple[list[Any], bool, str | None]:
    from jobledger.services.audit.verify import Range, parse_anchor, verify

    want = Range(getattr(args, "start", None), getattr(args, "stop", None))
    if anchor is not None:
        if want.start is not None:
            raise UsageError("--from: not with --anchor, which checks from offset 0")
        want.anchor = parse_anchor(anchor)
    source = await _source(args)
    try:
        with progress("verifying") as (advance, total):
            total(sum((await source.ends()).values()))
            results = await verify(source, want, advance)
        notes = [await source.upgrade_note(), (await source.retained()).note()]
    finally:
        await source.close()
    return results, all(r.finding is None for r in results), \
        "\n".join(n for n in notes if n) or None


def verify_command(args: argparse.Namespace) -> int:
    results, ok, note = asyncio.run(_verified(args, args.anchor))
    for result in results:
        print(result.line())
    if note:
        print(note)
    records = sum(r.end - r.start for r in results)
    if ok:
        extends = " and extends the anchor" if args.anchor else ""
        print(f"OK: {records} records in {len(results)} partitions; the chain holds{extends}")
        return Exit.OK
    bad = [r for r in results if r.finding is not None]
    print(f"BROKEN: {len(bad)} of {len(results)} partitions", file=sys.stderr)
    return Exit.TAMPERED


def anchor_command(args: argparse.Namespace) -> int:
    from jobledger.services.audit.verify import anchor_line

    results, ok, _ = asyncio.run(_verified(args, None))
    if not ok:
        for result in results:
            if result.finding is not None:
                print(result.line(), file=sys.stderr)
        print("error: the chain breaks: no anchor for a log that does not verify",
              file=sys.stderr)
        return Exit.TAMPERED
    print(anchor_line(results))
    return Exit.OK


def export_command(args: argparse.Namespace) -> int:
    from jobledger.services.audit.transfer import Filter, export
    from jobledger.services.audit.verify import Range

    async def body() -> int:
        source = await _source(args)
        try:
            await _refuse_before_the_cut(source, args.start)
            with progress("exporting") as (advance, total):
                total(sum((await source.ends()).values()))
                written = await export(source, Range(args.start, args.stop),
                                       Filter(args.topic, args.task), sys.stdout.buffer, advance)
        finally:
            await source.close()
        print(f"exported {written} records", file=sys.stderr)
        return Exit.OK

    return asyncio.run(body())


async def _refuse_before_the_cut(source: Any, start: datetime | int | None) -> None:
    """export --from before what a cut log keeps: UsageError naming the earliest kept.
    Without --from, the export starts at the cut (said on stderr)."""
    retained = await source.retained()
    note = retained.note()
    if note is None:
        return
    if start is None:
        print(note, file=sys.stderr)
        return
    if isinstance(start, datetime):
        before = int(start.timestamp() * 1000) < retained.time_ms
    else:
        before = any(start < first for first, _link in retained.starts.values())
    if before:
        raise UsageError("--from: before what the log keeps: " + note.removeprefix("note: "))


def import_command(args: argparse.Namespace) -> int:
    from jobledger.services.audit.transfer import check_file, import_file

    if not args.file.is_file():
        raise UsageError(f"file: no file at {args.file}")
    if args.db.exists() and args.db.stat().st_size:
        raise UsageError(f"--db: {args.db} exists: import into a new log file")
    with progress("checking the chain") as (advance, _):
        counts = check_file(args.file, advance)
    with progress("importing") as (advance, _):
        count = asyncio.run(import_file(args.file, args.db, counts, advance))
    print(f"imported {count} records into {args.db}; the chain holds")
    return Exit.OK


def migrate_command(args: argparse.Namespace) -> int:
    from jobledger.services.audit.migrate import migrate

    args.broker = args.to
    args.min_insync_replicas = None
    try:
        config = kafka_cli.kafka_config(args)
    except UsageError as error:
        raise UsageError(str(error).replace("--broker", "--to")) from None
    with progress("migrating") as (advance, total):
        done = asyncio.run(migrate(args.db, config, advance, total))
    before = sum(there for there, _ in done.values())
    copied = sum(now for _, now in done.values())
    print(f"migrated {args.db} to {args.to} (prefix {args.topic_prefix!r}): {copied} records "
          f"copied, {before} already there and checked; run the Kafka mode with "
          "--partitioner crc32")
    return Exit.OK


def upgrade_command(args: argparse.Namespace) -> int:
    from jobledger.services.log.sqlite import SQLiteLogBackend

    if not args.db.exists():
        raise UsageError(f"--db: no log at {args.db}")

    async def body() -> None:
        backend = await SQLiteLogBackend.open(args.db, {})
        await backend.close()

    asyncio.run(body())
    print(f"{args.db}: every record is chained")
    return Exit.OK
