"""The embedded node: one process running the log, the projections, the dispatcher with its
worker slots, and (optionally) the HTTP API, over one SQLite file."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from jobledger.projections.jobs import SharedReductions
from jobledger.projections.queries import Queries
from jobledger.projections.store import ReadModelStore
from jobledger.schemas import (
    JOBS,
    LOGS,
    SCHEDULES,
    SECURITY,
    WORKERS,
    Actor,
    ActorKind,
    WorkerLost,
)
from jobledger.schemas.api import DEFAULT_MAX_PAYLOAD_DEPTH
from jobledger.schemas.schedules import DEFAULT_MIN_INTERVAL_SECONDS
from jobledger.services.handlers.app import App
from jobledger.services.history.asof import History
from jobledger.services.history.log_retention import (
    LogRetention,
    Retained,
    install_base,
    open_retained,
)
from jobledger.services.history.retention import Retention
from jobledger.services.history.snapshots import (
    BASE_AFTER_ROWS,
    EVERY_EVENTS,
    Snapshots,
    Snapshotter,
)
from jobledger.services.log.sqlite import SQLiteLogBackend
from jobledger.services.node.base import SETTLE_SECONDS, Node
from jobledger.services.node.read_model_check import (
    fit_read_models,
    read_models_on_disk,
    record_log_source,
    refuse_a_lost_log,
)
from jobledger.services.runtime.clock import Clock, SystemClock
from jobledger.services.runtime.dispatcher import Dispatcher, DispatcherConfig
from jobledger.services.runtime.faults import Fault, passing_fault
from jobledger.services.runtime.projector import Projector
from jobledger.services.runtime.server_log import (
    log_started,
    log_stopped,
    log_stopping,
    log_worker_lost,
    logging_outcomes,
)
from jobledger.services.schedules.scheduler import Scheduler, SchedulerConfig
from jobledger.services.telemetry.setup import Telemetry
from jobledger.services.write.task_types import TaskTypes

log = logging.getLogger("jobledger.node")


def views_path(db: Path) -> Path:
    """Where the read models of a log file live: jobledger.db -> jobledger.views.db."""
    return db.with_name(db.stem + ".views" + (db.suffix or ".db"))


@dataclass
class NodeConfig:
    db: Path = Path("jobledger.db")
    partitions: int = 4  # of the jobs and logs topics; fixed when the file is created
    dispatcher: DispatcherConfig = field(default_factory=DispatcherConfig)
    run_workers: bool = True
    # The embedded node owns every partition of the schedules topic, so it fires them all.
    run_scheduler: bool = True
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    max_projection_lag_ms: int = 10_000  # /health answers 503 degraded beyond this
    # Accept tasks of types the app has no handler for (they fail when picked); by default
    # they are refused with UNKNOWN_TASK_TYPE.
    allow_unknown_task_types: bool = False
    max_payload_depth: int = DEFAULT_MAX_PAYLOAD_DEPTH  # deeper payloads: PAYLOAD_TOO_DEEP
    min_schedule_interval: float = DEFAULT_MIN_INTERVAL_SECONDS  # shorter: INVALID_TRIGGER
    # A snapshot of the read models for as_of every so many records applied, or seconds
    # (0: not by that measure; docs/audit.md).
    snapshot_every_events: int = EVERY_EVENTS
    snapshot_every_seconds: float = 0.0
    snapshot_base_after_rows: int = BASE_AFTER_ROWS  # a new base after so many jobs rows
    # Delete finished tasks' rows this long after they finished (None: keep them), first
    # appending them to archive_to if given (services/history/retention.py).
    retain_finished: timedelta | None = None
    archive_to: Path | None = None
    # Delete the log's records older than this, keeping the read models at the cut instead
    # (None: keep every record; services/history/log_retention.py).
    log_retention: timedelta | None = None
    telemetry: Telemetry | None = None  # OpenTelemetry (services/telemetry/); None: off


class EmbeddedNode(Node):
    """Start with `async with EmbeddedNode(config, app) as node:`."""

    config: NodeConfig
    backend: SQLiteLogBackend
    mode = "embedded"

    def __init__(self, config: NodeConfig, app: App, clock: Clock | None = None):
        self.config = config
        self.app = app
        self.clock = clock or SystemClock()
        self.node_id = config.dispatcher.worker_id  # its dispatcher's: one process does all

    async def start(self) -> None:
        """Open the log and the read models, start the dispatcher and the scheduler. If any
        step fails, what the earlier ones opened is closed again before the error is
        raised: a connection left open keeps its thread, and the process, alive."""
        self._running: list[Dispatcher | Scheduler] = []
        try:
            await self._start()
        except BaseException:
            await self._close_after_failed_start()
            raise

    async def _start(self) -> None:
        cfg = self.config
        partitions = {JOBS: cfg.partitions, LOGS: cfg.partitions, WORKERS: 1, SCHEDULES: 1,
                      SECURITY: 1}
        await self._open_log(partitions)
        self.store = await ReadModelStore.open(views_path(cfg.db))
        await record_log_source(self.store, self.backend)
        self.queries = await Queries.open(views_path(cfg.db))
        self.projector = Projector(self.backend, self.store, clock=self.clock, retry=True)
        self.projector.tracer = self.tracer
        await self.projector.load()
        identity = await self.backend.identity()
        snapshots = Snapshots.open(views_path(cfg.db), identity.log_id if identity else None)
        self.history = History(self.backend, self.queries, self.clock, snapshots,
                               cfg.retain_finished)
        self.history.retained = self.retained
        self.retention: Retention | None = None
        if cfg.retain_finished is not None:
            self.retention = Retention(self.store, self.queries, self.clock,
                                       cfg.retain_finished, cfg.archive_to)
        self.snapshotter = Snapshotter(snapshots, views_path(cfg.db), self.projector,
                                       self.clock, cfg.snapshot_every_events,
                                       cfg.snapshot_every_seconds, cfg.snapshot_base_after_rows)
        # The known task types are the app's handlers, with or without run_workers: the
        # workers of this file are this process's own.
        self._open_write_side(Actor(ActorKind.CLIENT, "embedded"),
                              TaskTypes(self.app.handlers, None, cfg.allow_unknown_task_types))
        self.dispatcher = None
        if cfg.run_workers:
            self.dispatcher = Dispatcher(self.backend, self.app, self.clock, cfg.dispatcher,
                                         traces=self.job_traces(cfg.dispatcher.worker_id))
            self.dispatcher.known_jobs = self.queries.finished
            # Both fold every jobs record, in the same order: reduce each event once. The
            # owner's fold logs the attempts' ends (server_log.py).
            self.projector.reduce = shared = SharedReductions()
            self.dispatcher.reduce = logging_outcomes(shared)
            # Start from the read model's snapshot, read before the projector moves on.
            self.dispatcher.load(
                await self.store.load_unfinished_jobs(), await self.store.load_queues(),
                self.projector.positions["jobs"],
            )
        self.scheduler = None
        if cfg.run_scheduler:
            self.scheduler = Scheduler(self.backend, self.clock, self.queries, cfg.scheduler,
                                       tracer=self.tracer)
            self.scheduler.load((await self.store.load_schedules()).values(),
                                self.projector.positions["schedules"])
        self.projector.start()
        self.snapshotter.start()
        if self.retention is not None:
            self.retention.start()
        self.log_retention: LogRetention | None = None
        if cfg.log_retention is not None:
            self.log_retention = LogRetention(
                self.backend, views_path(cfg.db), self.retained, self.store, self.projector,
                self.clock, cfg.log_retention, self._owner_positions)
            self.log_retention.start()
        if self.dispatcher is not None:
            await self.dispatcher.start()
            self._running.append(self.dispatcher)
        if self.scheduler is not None:
            await self.scheduler.catch_up()
            for partition, offset in await self.scheduler.declare(self.app.schedules):
                # Read-your-writes from the start: the API shows declared schedules at once.
                await asyncio.wait_for(self.projector.wait_for("schedules", partition, offset), 10)
            await self.scheduler.start()
            self._running.append(self.scheduler)
        await self._mark_lost_workers()
        log_started(f"log {cfg.db} ({self.backend.topic(JOBS).partitions} partitions), read "
                    f"models {views_path(cfg.db)}", self.app.handlers, self.dispatcher,
                    log=str(cfg.db), views=str(views_path(cfg.db)))

    async def _open_log(self, partitions: dict[str, int]) -> None:
        """Open the log, once the read models beside it are known to be its own
        (services/node/read_model_check.py): else they are refused or removed to be
        rebuilt. A lost log is refused before opening it would create a new one."""
        db, views = self.config.db, views_path(self.config.db)
        on_disk = read_models_on_disk(views)
        refuse_a_lost_log(db, views, on_disk)
        self.backend = await SQLiteLogBackend.open(db, partitions)
        try:
            await fit_read_models(views, on_disk, f"the log {db}", self.backend)
            self.retained: Retained = await open_retained(self.backend, views)
            install_base(views, self.retained, f"the log {db}")
        except BaseException:
            await self.backend.close()
            raise

    def _owner_positions(self) -> dict[str, dict[int, int]]:
        """How far the partitions' owners have folded (a log cut stops short of it)."""
        owners = {}
        if self.dispatcher is not None:
            owners[JOBS] = self.dispatcher.positions
        if self.scheduler is not None:
            owners[SCHEDULES] = self.scheduler.positions
        return owners

    async def stop(self) -> None:
        log_stopping(self.dispatcher)
        if self.dispatcher is not None:
            await self.dispatcher.stop()  # first: it must stop picking at once
        if self.scheduler is not None:
            await self.scheduler.stop()
        await self.publisher.drain()
        await self.caught_up(SETTLE_SECONDS)  # the read model shows what this node appended
        await self.snapshotter.stop()
        if self.retention is not None:
            await self.retention.stop()
        if self.log_retention is not None:
            await self.log_retention.stop()
        await self.projector.stop()
        await self.queries.close()
        await self.store.close()
        await self.backend.close()
        log_stopped()

    async def _close_after_failed_start(self) -> None:
        """Stop and close what a failed start() got to, last first. A failure here is only
        logged (at debug): the start's own error is the one raised."""
        steps = [part.stop for part in reversed(self._running)]
        if hasattr(self, "snapshotter"):
            steps.append(self.snapshotter.stop)
        for name in ("retention", "log_retention"):
            part = getattr(self, name, None)
            if part is not None:
                steps.append(part.stop)
        if hasattr(self, "projector"):
            steps.append(self.projector.stop)
        steps += [getattr(self, name).close for name in ("queries", "store", "backend")
                  if hasattr(self, name)]
        for step in steps:
            try:
                await step()
            except Exception:
                log.debug("after a failed start, %s failed", step.__qualname__, exc_info=True)

    async def _mark_lost_workers(self) -> None:
        """Workers still alive in the read model ran in an earlier process on this file
        (the file lock allows one writer): that process is gone, so they are lost."""
        mine = self.dispatcher.config.worker_id if self.dispatcher else None
        for worker_id, start in (await self.queries.alive_workers()).items():
            if worker_id != mine:
                self.publisher.publish(WorkerLost(worker_id=worker_id), worker_id,
                                       actor=Actor(ActorKind.DISPATCHER, mine or "embedded"),
                                       causation_id=start, correlation_id=start)
                log_worker_lost(worker_id, "alive when the previous server on this "
                                "log ended; its running jobs are retried once their leases expire")

    def log_writable(self) -> bool:
        return self.backend.writer is not None

    def crashed(self) -> list[str]:
        return (super().crashed() + self.snapshotter.crashed()
                + (self.retention.crashed() if self.retention is not None else [])
                + (self.log_retention.crashed() if self.log_retention is not None else []))

    def faults(self) -> list[str]:
        failing = self.backend.failing
        if failing is None:
            return super().faults()
        error, since = failing
        log = Fault("log", passing_fault(error) or str(error), since,
                    "appends answer 503 LOG_UNAVAILABLE")
        return [log.reason(), *super().faults()]
