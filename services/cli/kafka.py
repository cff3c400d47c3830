"""The Kafka mode's commands: `jobledger worker`, `jobledger api`, and the `--broker` of
`jobledger serve` and `jobledger replay`. Every flag has a JOBLEDGER_* environment variable
(services/cli/env.py).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobledger.services.cli.auth import (
    add_auth_args,
    auth_text,
    security_settings,
    warn_without_shared_secret,
)
from jobledger.services.cli.common import (
    UsageError,
    allow_unknown_task_types_arg,
    app_of,
    check_data_file,
    hub_config,
    input_limit_args,
    listen,
    warn_without_task_types,
    ws_max_message_arg,
)
from jobledger.services.cli.env import EnvParser
from jobledger.services.cli.logs import add_log_args
from jobledger.services.cli.otel import add_otel_arg, telemetry_of
from jobledger.services.handlers.app import App
from jobledger.services.runtime.gc_tuning import tune_gc

if TYPE_CHECKING:  # aiokafka (and faust) are imported only by the commands that use them
    from jobledger.services.log.kafka import KafkaConfig
    from jobledger.services.node.kafka import KafkaNode, KafkaNodeConfig

DEFAULT_PARTITIONS = 12
DEFAULT_VIEWS = "jobledger.views.db"
SCHEME = "kafka://"


def add_kafka_args(parser: argparse.ArgumentParser, required: bool) -> None:
    """The flags that say which Kafka cluster and topics to use."""
    group = parser.add_argument_group("Kafka")
    group.add_argument(
        "--broker", required=required,
        help="kafka://HOST:PORT[,HOST:PORT...]: the Kafka cluster"
        + ("" if required else "; without it, the embedded SQLite mode"))
    group.add_argument("--topic-prefix", default="jobledger.",
                       help="prefix of every topic name (default 'jobledger.')")
    group.add_argument("--replication-factor", type=int, default=1,
                       help="replicas of topics jobledger creates (default 1; use 3 in "
                       "production)")
    group.add_argument("--min-insync-replicas", type=int,
                       help="min.insync.replicas of topics jobledger creates (default: the "
                       "broker's)")
    group.add_argument("--idempotence", action=argparse.BooleanOptionalAction, default=True,
                       help="the idempotent producer (default on; turn off only for brokers "
                       "that cannot do it)")
    group.add_argument("--partitioner", choices=("murmur2", "crc32"), default="murmur2",
                       help="how a key picks its partition: murmur2, Kafka's default; crc32 "
                       "for topics `jobledger migrate` filled from an embedded log (default "
                       "murmur2)")
    group.add_argument("--session-timeout-ms", type=int, default=10_000,
                       help="consumer-group session timeout: a dead process's partitions move "
                       "after about this long (default 10000)")


def _partitions_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--partitions", type=int, default=DEFAULT_PARTITIONS,
                        help=f"partitions of each topic jobledger creates (default "
                        f"{DEFAULT_PARTITIONS}; existing topics keep theirs)")


def views_arg(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--views", type=Path, default=Path(DEFAULT_VIEWS),
                        help=f"this process's read-model file, {what} (default ./{DEFAULT_VIEWS})")


def _projection_host(value: str) -> str:
    """A type, not choices: the node module (faust, aiokafka) is imported only when the
    flag is used."""
    from jobledger.services.node.kafka import PROJECTION_HOSTS

    if value not in PROJECTION_HOSTS:
        raise argparse.ArgumentTypeError(f"one of {', '.join(PROJECTION_HOSTS)}, got {value!r}")
    return value


def _projection_host_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--projection-host", type=_projection_host, metavar="{aiokafka,faust}",
                        default="aiokafka",
                        help="what feeds the read models: aiokafka tails (default) or "
                        "faust-streaming agents, which cost about four times the CPU per job")


def _app_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--app", help="your handlers, as module:attribute naming a jobledger App")
    parser.add_argument("--demo", action="store_true",
                        help="register the demo jobs: echo, sleep, fail, flaky")


def _worker_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrency", type=int, default=8,
                        help="worker slots: jobs run at once (default 8)")
    parser.add_argument("--lease-seconds", type=float, default=30.0,
                        help="lease of a picked job, renewed by heartbeats (default 30)")
    parser.add_argument("--shutdown-grace-seconds", type=float, default=10.0,
                        help="on SIGTERM, how long running jobs may finish (default 10)")


def _http_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="default 8080")
    parser.add_argument("--max-projection-lag-ms", type=int, default=10_000,
                        help="/health is degraded (503) when the projections lag more "
                       "(default 10000)")
    parser.add_argument("--catch-up-seconds", type=float, default=60.0,
                        help="at start, wait up to this long for the read models to reach the "
                        "log's end before serving (default 60)")


def add_parsers(sub: argparse._SubParsersAction[EnvParser]) -> None:
    worker = sub.add_parser(
        "worker", help="Kafka mode: run jobs of the partitions this process is assigned",
        description="Join the consumer group of the jobs topic and run the jobs of the "
        "partitions it assigns to this process: the dispatcher (picks, leases, retries) and "
        "N worker slots. With --schedules, also fire the schedules of the schedules "
        "partitions it is assigned; that needs read models of its own (--views). Stops "
        "gracefully on SIGTERM or SIGINT.",
        epilog="example: jobledger worker --broker kafka://kafka-1:9092 --app myjobs:app "
        "--concurrency 16",
    )
    add_kafka_args(worker, required=True)
    _partitions_arg(worker)
    _app_args(worker)
    _worker_args(worker)
    worker.add_argument("--schedules", action=argparse.BooleanOptionalAction, default=False,
                        help="also fire schedules (default off)")
    views_arg(worker, "used with --schedules")
    _projection_host_arg(worker)
    add_log_args(worker)
    add_otel_arg(worker)

    api = sub.add_parser(
        "api", help="Kafka mode: projections, REST API and WebSocket (run any number)",
        description="Fold every topic into this process's own read models, catch up from "
        "the log, then serve the REST API and the WebSocket from them. Writes are appended "
        "to the topics.",
        epilog="example: jobledger api --broker kafka://kafka-1:9092 --views api.views.db "
        "--host 0.0.0.0 --port 8080",
    )
    add_kafka_args(api, required=True)
    _partitions_arg(api)
    views_arg(api, "rebuilt from the log if missing")
    _projection_host_arg(api)
    _http_args(api)
    add_auth_args(api)
    allow_unknown_task_types_arg(api)
    input_limit_args(api)
    ws_max_message_arg(api)
    add_log_args(api)
    add_otel_arg(api)


def kafka_config(args: argparse.Namespace, partitions: int | None = None) -> KafkaConfig:
    from jobledger.services.log.kafka import KafkaConfig

    broker: str = args.broker
    if not broker.startswith(SCHEME) or not broker[len(SCHEME):].strip():
        raise UsageError(f"--broker: give kafka://HOST:PORT[,HOST:PORT...], got {broker!r}")
    servers = ",".join(s.strip().removeprefix(SCHEME) for s in broker[len(SCHEME):].split(","))
    return KafkaConfig(
        servers, topic_prefix=args.topic_prefix,
        partitions=DEFAULT_PARTITIONS if partitions is None else partitions,
        replication_factor=args.replication_factor, min_insync_replicas=args.min_insync_replicas,
        idempotent=args.idempotence, partitioner=getattr(args, "partitioner", "murmur2"),
    )


def _node_config(args: argparse.Namespace, **roles: bool) -> KafkaNodeConfig:
    from jobledger.services.kafka.ownership import GroupSettings
    from jobledger.services.node.kafka import KafkaNodeConfig
    from jobledger.services.runtime.dispatcher import DispatcherConfig

    settings: dict[str, Any] = {"projection_host": getattr(args, "projection_host", "aiokafka")}
    if roles.get("run_workers"):
        settings["dispatcher"] = DispatcherConfig(
            concurrency=args.concurrency, lease_seconds=args.lease_seconds,
            shutdown_grace_seconds=getattr(args, "shutdown_grace_seconds", 10.0))
    if hasattr(args, "allow_unknown_task_types"):
        settings["allow_unknown_task_types"] = args.allow_unknown_task_types
    if hasattr(args, "max_payload_depth"):  # the commands that serve the API
        settings["max_payload_depth"] = args.max_payload_depth
        settings["min_schedule_interval"] = args.min_schedule_interval
    if hasattr(args, "max_projection_lag_ms"):
        settings["max_projection_lag_ms"] = args.max_projection_lag_ms
        settings["catch_up_seconds"] = getattr(args, "catch_up_seconds", 60.0)
    return KafkaNodeConfig(
        kafka=kafka_config(args, args.partitions), views=args.views,
        group=GroupSettings(args.session_timeout_ms),
        **roles,  # type: ignore[arg-type]  # roles are the config's bool fields
        **settings,
    )


def node_config_for(args: argparse.Namespace) -> KafkaNodeConfig:
    """The node the parsed `worker`, `api` or `serve --broker` command runs."""
    if args.command == "worker":
        return _node_config(args, run_projections=args.schedules, run_workers=True,
                            run_scheduler=args.schedules)  # fmt: skip
    if args.command == "api":
        return _node_config(args, run_projections=True, run_workers=False, run_scheduler=False)
    return _node_config(args, run_projections=True, run_workers=not args.no_workers,
                        run_scheduler=not args.no_workers)  # fmt: skip


def worker(args: argparse.Namespace) -> int:
    from jobledger.services.node.kafka import KafkaNode

    app = app_of(args, required=True)
    config = node_config_for(args)
    if args.schedules:
        check_data_file(args.views, "--views")
    banner = (f"jobledger worker: {args.broker} ({args.topic_prefix}*), {len(app.handlers)} "
              f"task types, {args.concurrency} slots" + (", schedules" if args.schedules else ""))
    config.telemetry = telemetry_of(args)
    _run(_run_until_signalled(KafkaNode(config, app), banner))
    if config.telemetry is not None:
        config.telemetry.shutdown()  # exports the spans still buffered
    return 0


def _run(main: Coroutine[Any, Any, None]) -> None:
    """On uvloop (a dependency, as under `jobledger api`'s uvicorn): the worker's loop
    carries every fetch, produce and pick, and the plain asyncio loop's socket writes cost
    a worker much more (docs/performance.md, "Figures behind the code")."""
    tune_gc()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - installed with jobledger
        asyncio.run(main)
    else:
        uvloop.run(main)


async def _run_until_signalled(node: KafkaNode, banner: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with node:
        print(banner, file=sys.stderr, flush=True)  # once started: it has joined the group
        await stop.wait()


def api(args: argparse.Namespace) -> int:
    return _serve_http(args, App())


def serve(args: argparse.Namespace) -> int:
    """`jobledger serve --broker`: projections, API, workers and scheduler in one process."""
    app = app_of(args, required=False)
    warn_without_task_types(app.handlers)
    return _serve_http(args, app)


def _serve_http(args: argparse.Namespace, app: App) -> int:
    from jobledger.api.app import create_app, run_server
    from jobledger.services.node.kafka import KafkaNode

    config = node_config_for(args)
    check_data_file(args.views, "--views")
    security = security_settings(args, args.views.parent)
    warn_without_shared_secret(security)
    config.telemetry = telemetry_of(args)
    sock = listen(args.host, args.port)
    web = create_app(lambda: KafkaNode(config, app), hub_config(args), security=security,
                     telemetry=config.telemetry)
    run_server(web, sock, f"jobledger: {args.broker} ({args.topic_prefix}*), read models "
               f"{args.views}, http://{args.host}:{args.port}, {auth_text(security)}")
    if config.telemetry is not None:
        config.telemetry.shutdown()  # exports the spans still buffered
    return 0
