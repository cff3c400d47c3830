"""`jobledger stats|workers|queues|queue-depth|cluster-status`: the system as the API sees it,
in seed 003's tables (or the API's JSON, or YAML)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from jobledger.services.cli.common import (
    EXIT_CODES,
    Exit,
    UsageError,
    as_of_arg,
    call_server,
    server_arg,
)
from jobledger.services.cli.output import emit, fields, format_arg, table

if TYPE_CHECKING:
    from rich.console import RenderableType

    from jobledger.schemas.api import ClusterInfo, Health, QueueDepth, Stats
    from jobledger.services.client.async_client import Client

RAW = argparse.RawDescriptionHelpFormatter
BANDS = "high >= 170, normal 85-169, low < 85"
BAR_WIDTH = 50  # characters of the longest bar


def add_parsers(sub: Any) -> None:
    def command(name: str, text: str, run: Any, description: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(
            name, help=text, description=description, epilog=EXIT_CODES, formatter_class=RAW)
        format_arg(parser)
        server_arg(parser)
        parser.set_defaults(run=run)
        return parser

    as_of_arg(command("stats", "counts, queue depth and last-hour runs", stats_command,
                      "Tasks per status, pending tasks per priority band, runs of the last hour "
                      "and the mean processing time."))
    command("workers", "workers and their load", workers_command,
            "Every worker ever registered: its running tasks, CPU and memory (as of its last "
            "heartbeat) and whether it is alive, stopped or lost.")
    queues = command("queues", "queues, or pause or resume one", queues_command,
                     "Without an action: every queue, paused or not, with its waiting and "
                     "running tasks and its pending tasks per priority band (" + BANDS + "). "
                     "`queues pause Q` stops picking from Q; `queues resume Q` starts again.")
    queues.add_argument("action", nargs="?", choices=("list", "pause", "resume"), default="list")
    queues.add_argument("queue", nargs="?", help="the queue to pause or resume")
    as_of_arg(queues)
    depth = command("queue-depth", "pending tasks per priority band, as bars", depth_command,
                    f"Pending tasks per priority band ({BANDS}) as bars: of every queue, or "
                    "of one.")
    depth.add_argument("--queue", help="only this queue's pending tasks")
    command("cluster-status", "health, partition owners and lag", cluster_command,
            "The server's /health: healthy or degraded (then exit 1), whether it decides for "
            "jobs (the leader), connected workers, pending tasks, projection lag; then every "
            "partition of every topic (GET /api/v1/cluster): who owns it (a worker for jobs, "
            "a scheduler for schedules; in Kafka mode by the consumer groups' assignment), "
            "its end, and how far the answering node's read models have read it.")


def stats_command(args: argparse.Namespace) -> int:
    async def body(client: Client) -> None:
        stats = await client.stats(as_of=args.as_of)
        emit(stats, args.format, lambda: fields(stats_rows(stats), ("Metric", "Value")))

    return call_server(args, body)


def stats_rows(stats: Stats) -> list[tuple[str, Any]]:
    """Seed 003's rows (Pending Tasks, In Progress, Workers, Queue (High) ...), and the rest."""
    depth = stats.queue_depth_by_priority
    return [
        ("Pending Tasks", stats.pending_count), ("In Progress", stats.in_progress_count),
        ("Scheduled", stats.scheduled_count), ("Completed", stats.completed_count),
        ("Failed", stats.failed_count), ("Dead Letter", stats.dead_letter_count),
        ("Cancelled", stats.cancelled_count), ("Workers", stats.worker_count),
        ("Queue (High)", depth.high), ("Queue (Normal)", depth.normal),
        ("Queue (Low)", depth.low), ("Completed (last hour)", stats.completed_last_hour),
        ("Failed (last hour)", stats.failed_last_hour),
        ("Avg Processing (ms)", f"{stats.avg_processing_time_ms:.1f}"),
    ]


def workers_command(args: argparse.Namespace) -> int:
    async def body(client: Client) -> None:
        workers = await client.workers()
        emit(workers, args.format, lambda: table(
            ("Worker ID", "Tasks", "CPU %", "Memory MB", "Status", "Last Heartbeat"),
            ((w.worker_id, len(w.current_tasks), f"{w.cpu_usage_percent:.1f}",
              f"{w.memory_usage_mb:.0f}", w.status, w.last_heartbeat) for w in workers)))

    return call_server(args, body)


def queues_command(args: argparse.Namespace) -> int:
    if args.action == "list":
        if args.queue is not None:
            raise UsageError(f"queues: {args.queue!r} is not an action; give pause or resume "
                             "before the queue's name")
        return _list_queues(args)
    if not args.queue:
        raise UsageError(f"queues {args.action}: give the queue's name")
    if args.as_of is not None:
        raise UsageError(f"queues {args.action}: --as-of reads the past; it cannot change it")

    async def body(client: Client) -> None:
        toggle = client.pause_queue if args.action == "pause" else client.resume_queue
        toggled = await toggle(args.queue)
        emit(toggled, args.format, lambda: f"{toggled.queue}: "
             f"{'paused' if toggled.paused else 'picked from again'}")

    return call_server(args, body)


def _list_queues(args: argparse.Namespace) -> int:
    async def body(client: Client) -> None:
        queues = await client.queues(as_of=args.as_of)
        emit(queues, args.format, lambda: table(
            ("Queue", "Paused", "Pending", "Scheduled", "In Progress", "High", "Normal", "Low"),
            ((q.queue, q.paused, q.pending, q.scheduled, q.in_progress,
              q.pending_by_priority.high, q.pending_by_priority.normal,
              q.pending_by_priority.low) for q in queues)))

    return call_server(args, body)


def depth_command(args: argparse.Namespace) -> int:
    async def body(client: Client) -> None:
        depth = await _depth(client, args.queue)
        emit(depth, args.format, lambda: bars(depth))

    return call_server(args, body)


async def _depth(client: Client, queue: str | None) -> QueueDepth:
    """The stats' depth per band, or one queue's (zero for a queue nothing waits in)."""
    from jobledger.schemas.api import QueueDepth

    if queue is None:
        return (await client.stats()).queue_depth_by_priority
    known = {q.queue: q.pending_by_priority for q in await client.queues()}
    return known.get(queue, QueueDepth(high=0, normal=0, low=0))


def bars(depth: QueueDepth) -> RenderableType:
    """Seed 003's bar chart: a line per band, the count, and a bar scaled to the largest."""
    from rich.text import Text

    counts = {"High": depth.high, "Normal": depth.normal, "Low": depth.low}
    top = max(counts.values()) or 1
    lines = [Text("Queue Depth by Priority:")]
    for band, count in counts.items():
        line = Text(f"  {band + ':':<8}{count:>7} ")
        length = round(BAR_WIDTH * count / top)
        line.append("█" * length or ("▏" if count else ""), style="cyan")
        lines.append(line)
    return Text("\n").join(lines)


def cluster_command(args: argparse.Namespace) -> int:
    async def body(client: Client) -> int:
        import msgspec

        health, cluster = await client.health(), await client.cluster()
        both = msgspec.to_builtins(health) | msgspec.to_builtins(cluster)
        emit(both, args.format, lambda: cluster_tables(health, cluster))
        return Exit.OK if health.status == "healthy" else Exit.FAILED

    return call_server(args, body)


def cluster_tables(health: Health, cluster: ClusterInfo) -> RenderableType:
    from rich.console import Group

    rows = [("Mode", cluster.mode), ("Node", cluster.node_id), *health_rows(health)]
    partitions = table(("Topic", "Partition", "Owner", "End", "Projected", "Lag"), (
        (p.topic, p.partition, p.owner, p.end_offset, p.projected, p.lag)
        for p in cluster.partitions))
    return Group(fields(rows, ("Property", "Value")), partitions)


def health_rows(health: Health) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = [
        ("Status", health.status), ("Is Leader", health.is_leader),
        ("Connected Workers", health.connected_workers), ("Pending Tasks", health.pending_tasks),
        ("Projection Lag (ms)", health.projection_lag_ms),
        ("Quarantined Records", health.quarantined_records),
    ]
    if health.crashed:
        rows.append(("Crashed", ", ".join(health.crashed)))
    return rows
