"""The `jobledger` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import textwrap
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

from jobledger.services.cli import audit, completion, inspect, runs, tasks, watch
from jobledger.services.cli import kafka as kafka_cli
from jobledger.services.cli.auth import add_auth_args, auth_text, security_settings
from jobledger.services.cli.common import (
    NO_TASK_TYPES,
    SERVER_EXIT_CODES,
    Exit,
    UsageError,
    allow_unknown_task_types_arg,
    app_of,
    check_data_file,
    exit_promptly,
    hub_config,
    input_limit_args,
    listen,
    run_command,
    server_arg,
    ws_max_message_arg,
)
from jobledger.services.cli.env import RULE, EnvParser, leaf_parsers
from jobledger.services.cli.exposure import add_exposure_args, exposure_notes, exposure_settings
from jobledger.services.cli.logs import add_log_args
from jobledger.services.cli.logs import configure as configure_logging
from jobledger.services.cli.otel import add_otel_arg, telemetry_of


def build_parser() -> argparse.ArgumentParser:
    parser = EnvParser(
        prog="jobledger",
        description="An event-sourced job orchestrator: every step of every job is an event "
        "on a log; job details, runs, stats and workers are projections of it.",
        epilog=RULE,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="run the log, projections, dispatcher, worker slots and HTTP API in one process",
        description="Run everything in one process over one SQLite file: the log, the read "
        "models (in <db>.views.db), the dispatcher with N worker slots and the HTTP API.",
        epilog=SERVER_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--db", type=Path, default=Path("jobledger.db"),
                       help="the log file (default ./jobledger.db)")
    serve.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    serve.add_argument("--port", type=int, default=8080, help="default 8080")
    serve.add_argument("--concurrency", type=int, default=8,
                       help="worker slots: jobs run at once (default 8)")
    serve.add_argument("--partitions", type=int,
                       help="partitions of a new log file (default 4), or with --broker of "
                       "each Kafka topic jobledger creates (default 12)")
    serve.add_argument("--lease-seconds", type=float, default=30.0,
                       help="lease of a picked job, renewed by heartbeats (default 30)")
    serve.add_argument("--demo", action="store_true",
                       help="register the demo jobs: echo, sleep, fail, flaky")
    serve.add_argument("--app",
                       help="your handlers, as module:attribute naming a jobledger App")
    serve.add_argument("--no-workers", action="store_true",
                       help="serve the API and projections only; run no jobs (tasks of the "
                       "types of --app/--demo are still accepted)")
    allow_unknown_task_types_arg(serve)
    input_limit_args(serve)
    ws_max_message_arg(serve)
    serve.add_argument("--max-projection-lag-ms", type=int, default=10_000,
                       help="/health is degraded (503) when the projections lag more "
                       "(default 10000)")
    serve.add_argument("--snapshot-every-events", type=int, default=20_000, metavar="N",
                       help="snapshot the read models for as_of every N records applied "
                       "(0: never by count; default 20000; docs/audit.md)")
    serve.add_argument("--snapshot-every-minutes", type=float, default=0.0, metavar="M",
                       help="and/or every M minutes with records applied (default 0: never)")
    serve.add_argument("--retain-finished", metavar="AGE", type=_age_of("--retain-finished"),
                       help="delete finished tasks' rows from the read models AGE after they "
                       "finished (30d, 12h; default: keep them); the log keeps every event "
                       "(docs/audit.md)")
    serve.add_argument("--archive-to", type=Path, metavar="FILE",
                       help="with --retain-finished: append each task to FILE as a JSON line "
                       "first")
    serve.add_argument("--log-retention", metavar="AGE", type=_age_of("--log-retention"),
                       help="delete the log's records older than AGE (90d), keeping the read "
                       "models at the cut instead; as_of, verify, export and replay then "
                       "start at the cut (default: keep every record; embedded log only; "
                       "docs/audit.md)")
    add_auth_args(serve)
    add_exposure_args(serve)
    add_log_args(serve)
    add_otel_arg(serve)
    kafka_cli.add_kafka_args(serve, required=False)
    kafka_cli.views_arg(serve, "with --broker")
    kafka_cli.add_parsers(sub)

    # The client commands, a module per group (each sets its handler as `run`).
    for group in (tasks, runs, watch, inspect, audit):
        group.add_parsers(sub)

    replay = sub.add_parser(
        "replay", help="rebuild every read model from the log into a fresh file",
        description="Read the whole log from offset 0 into fresh read models and print a "
        "checksum of each; with the live read models beside, compare them.",
        epilog=SERVER_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    replay.add_argument("--db", type=Path, default=Path("jobledger.db"),
                        help="the log file (default ./jobledger.db)")
    replay.add_argument("--out", type=Path, help="the new read-model file (default "
                        "<db>.replay.db; with --broker ./jobledger.replay.db)")
    replay.add_argument("--live", type=Path, help="with --broker: a live read-model file "
                        "(an API node's --views) to compare the checksums with")
    add_log_args(replay)
    kafka_cli.add_kafka_args(replay, required=False)

    from jobledger.services.cli.keys import add_parser as add_keys_parser
    from jobledger.services.cli.schedules import add_parser as add_schedules_parser
    from jobledger.services.cli.users import add_parser as add_users_parser

    add_schedules_parser(sub, server_arg)
    add_keys_parser(sub, server_arg)
    add_users_parser(sub, server_arg)

    sub.add_parser("schema", help="print the JSON Schema of every event",
                   description="Print the JSON Schema of the event envelope and every event.")
    completion.add_parsers(sub)
    for command in leaf_parsers(parser):
        command.add_argument("--debug", action="store_true",
                             help="on a failure, print its traceback too")
        # Filled here: `schedules` keeps its epilog's line breaks (RawDescriptionHelpFormatter).
        command.epilog = "\n\n".join(filter(None, [command.epilog, textwrap.fill(RULE, 79)]))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "log_format"):
        configure_logging(args.log_level, args.log_format)
    handler = getattr(args, "run", None) or {
        "serve": _serve, "replay": _replay, "schema": _schema, "schedules": _schedules,
        "keys": _keys, "users": _users, "worker": kafka_cli.worker,
        "api": kafka_cli.api}[args.command]
    if args.command not in _STARTS_A_NODE:
        return run_command(handler, args)
    try:
        code = run_command(handler, args)
    except BaseException as error:
        exit_promptly(1, error)
        raise
    if code:
        exit_promptly(code)
    return code


# Commands that start a node: a failed start must not leave the process running (only
# these: exit_promptly ends the process, and tests call the other commands in-process).
_STARTS_A_NODE = frozenset({"serve", "api", "worker"})


def _serve(args: argparse.Namespace) -> int:
    if args.broker:
        if args.log_retention is not None:
            raise UsageError("--log-retention: the embedded log only; Kafka topics keep what "
                             "their retention.ms says (docs/audit.md, \"Retention\")")
        return kafka_cli.serve(args)
    from jobledger.api.app import create_app, run_server
    from jobledger.services.node.embedded import EmbeddedNode, NodeConfig
    from jobledger.services.runtime.dispatcher import DispatcherConfig

    app = app_of(args, required=False)
    check_data_file(args.db, "--db")
    security = security_settings(args, args.db.parent)
    telemetry = telemetry_of(args)
    config = NodeConfig(
        db=args.db, partitions=4 if args.partitions is None else args.partitions,
        run_workers=not args.no_workers,
        max_projection_lag_ms=args.max_projection_lag_ms,
        allow_unknown_task_types=args.allow_unknown_task_types,
        max_payload_depth=args.max_payload_depth,
        min_schedule_interval=args.min_schedule_interval,
        snapshot_every_events=int(_at_least_0(args.snapshot_every_events,
                                              "--snapshot-every-events")),
        snapshot_every_seconds=60 * _at_least_0(args.snapshot_every_minutes,
                                                "--snapshot-every-minutes"),
        dispatcher=DispatcherConfig(concurrency=args.concurrency, lease_seconds=args.lease_seconds),
        retain_finished=args.retain_finished, archive_to=_archive(args),
        log_retention=args.log_retention,
        telemetry=telemetry,
    )
    sock = listen(args.host, args.port)
    web = create_app(lambda: EmbeddedNode(config, app), hub_config(args), security=security,
                     exposure=exposure_settings(args), telemetry=telemetry)
    banner = "\n".join([f"jobledger: log {args.db}, {len(app.handlers)} task types, "
                        f"http://{args.host}:{args.port}, {auth_text(security)}",
                        *exposure_notes(args)])
    # The warning waits for a successful start, so a failed one stays one line.
    run_server(web, sock, banner if app.handlers else f"{banner}\n{NO_TASK_TYPES}")
    if telemetry is not None:
        telemetry.shutdown()  # exports the spans still buffered
    return 0


def _age_of(flag: str) -> Callable[[str], timedelta]:
    """A flag's parser of a duration (30d, 12h) that names the flag when it is not one."""
    from jobledger.services.cli.schedules import parse_duration

    def age(text: str) -> timedelta:
        try:
            return timedelta(**parse_duration(text.strip(), flag))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return age


def _archive(args: argparse.Namespace) -> Path | None:
    if args.archive_to is not None and args.retain_finished is None:
        raise UsageError("--archive-to: give --retain-finished too (nothing is archived "
                         "while finished tasks are kept)")
    return args.archive_to  # type: ignore[no-any-return]  # argparse: untyped


def _at_least_0(value: float, flag: str) -> float:
    if value < 0:
        raise UsageError(f"{flag} {value}: give 0 or more")
    return value


def _replay(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from jobledger.services.log.protocol import DataFileError, LogError
    from jobledger.services.node.embedded import views_path
    from jobledger.services.replay.guard import OutInUse, refuse_a_protected_file
    from jobledger.services.replay.rebuild import checksums, replay, replay_topics

    live_path: Path | None
    if args.broker:
        out = args.out or Path("jobledger.replay.db")
        live_path = args.live
        protected = {"the live read-model file (--live)": live_path} if live_path else {}
    else:
        out = args.out or args.db.with_name(args.db.stem + ".replay.db")
        live_path = views_path(args.db)
        protected = {"the log file (--db)": args.db,
                     f"the live read-model file of {args.db}": live_path}
    try:
        refuse_a_protected_file(out, protected)
        if args.broker:
            rebuilt = asyncio.run(replay_topics(kafka_cli.kafka_config(args), out))
        else:
            rebuilt = asyncio.run(replay(args.db, out))
    except (LogError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if isinstance(exc, OutInUse):  # a refused --out: a usage error
            return Exit.USAGE
        return Exit.DATA if isinstance(exc, DataFileError) else Exit.FAILED
    live = asyncio.run(checksums(live_path)) if live_path and live_path.exists() else {}
    table = Table(title=f"read models rebuilt into {out}")
    table.add_column("read model")
    table.add_column("rebuilt")
    table.add_column(f"live ({live_path.name})" if live_path else "live")
    for name, digest in rebuilt.items():
        other = live.get(name, "-")
        mark = "" if not live else (" ✓" if other == digest else " ≠")
        table.add_row(name, digest, other + mark)
    Console().print(table)
    return 0


def _schedules(args: argparse.Namespace) -> int:
    from jobledger.services.cli.schedules import run

    return run(args)


def _keys(args: argparse.Namespace) -> int:
    from jobledger.services.cli.keys import run

    return run(args)


def _users(args: argparse.Namespace) -> int:
    from jobledger.services.cli.users import run

    return run(args)


def _schema(args: argparse.Namespace) -> int:
    from jobledger.schemas.jsonschema import wire_schema

    print(json.dumps(wire_schema(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
