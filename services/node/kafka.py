"""A node of the scale-out mode: the roles it is given, over Kafka topics.

- projections (+ the API's commands): every topic is folded into this node's own
  read-model file, by aiokafka tails (services/kafka/projections.py), or by faust agents
  (services/kafka/faust_host.py) if `projection_host` says so. An API node; any number of them.
- workers: a dispatcher with worker slots, owning the jobs partitions the consumer group
  `<prefix>dispatchers` assigns to it (services/kafka/ownership.py).
- scheduler: fires the schedules of the schedules partitions the group `<prefix>schedulers`
  assigns to it. It counts a schedule's unfinished jobs in the read models, so it needs
  the projections role too.

`jobledger api` runs projections, `jobledger worker` runs workers (and, with --schedules,
the scheduler and the projections it needs), `jobledger serve --broker` runs all three.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from jobledger.projections.queries import Queries
from jobledger.projections.store import ReadModelStore
from jobledger.schemas import JOBS, SCHEDULES, Actor, ActorKind
from jobledger.schemas.api import DEFAULT_MAX_PAYLOAD_DEPTH
from jobledger.schemas.common import uuid7
from jobledger.schemas.schedules import DEFAULT_MIN_INTERVAL_SECONDS
from jobledger.services.handlers.app import App
from jobledger.services.history.asof import History
from jobledger.services.history.snapshots import (
    BASE_AFTER_ROWS,
    EVERY_EVENTS,
    Snapshots,
    Snapshotter,
)
from jobledger.services.kafka.liveness import GroupLiveness, member_client_id
from jobledger.services.kafka.ownership import AfterAssign, GroupOwnership, GroupSettings
from jobledger.services.kafka.projections import LogProjections
from jobledger.services.log.kafka import KafkaConfig, KafkaLogBackend, jobledger_topics
from jobledger.services.node.base import SETTLE_SECONDS, Node
from jobledger.services.node.read_model_check import (
    fit_read_models,
    read_models_on_disk,
    record_log_source,
)
from jobledger.services.runtime.clock import Clock, SystemClock
from jobledger.services.runtime.dispatcher import Dispatcher, DispatcherConfig
from jobledger.services.runtime.projector import Projector
from jobledger.services.runtime.server_log import (
    log_started,
    log_stopped,
    log_stopping,
    logging_outcomes,
)
from jobledger.services.runtime.supervise import cancel_and_wait, crashed, spawn
from jobledger.services.schedules.scheduler import Scheduler, SchedulerConfig
from jobledger.services.telemetry.setup import Telemetry
from jobledger.services.write.task_types import TaskTypes

if TYPE_CHECKING:
    from jobledger.services.kafka.faust_host import FaustProjections

PROJECTION_HOSTS = ("aiokafka", "faust")  # what feeds the projector (KafkaNodeConfig)


@dataclass
class KafkaNodeConfig:
    """views: this node's read-model file (projections role). catch_up_seconds: how long
    start() waits for the read models to reach the log's end before it returns anyway
    (/health then reports the lag). projection_host: what feeds the projector, "aiokafka"
    (one tail of every topic, services/kafka/projections.py) or "faust" (faust-streaming agents,
    services/kafka/faust_host.py; about four times the CPU per job, docs/kafka.md)."""

    kafka: KafkaConfig
    views: Path = Path("jobledger.views.db")
    run_projections: bool = True
    run_workers: bool = True
    run_scheduler: bool = True
    node_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{uuid7()[-6:]}")
    dispatcher: DispatcherConfig = field(default_factory=DispatcherConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    group: GroupSettings = field(default_factory=GroupSettings)
    max_projection_lag_ms: int = 10_000
    catch_up_seconds: float = 60.0
    # With projections: mark workers lost whose process left the dispatchers group.
    mark_lost_workers: bool = True
    projection_host: str = "aiokafka"
    # Accept tasks of types no worker has declared; by default refused (UNKNOWN_TASK_TYPE).
    allow_unknown_task_types: bool = False
    max_payload_depth: int = DEFAULT_MAX_PAYLOAD_DEPTH  # deeper payloads: PAYLOAD_TOO_DEEP
    min_schedule_interval: float = DEFAULT_MIN_INTERVAL_SECONDS  # shorter: INVALID_TRIGGER
    telemetry: Telemetry | None = None  # OpenTelemetry (services/telemetry/); None: off
    # With projections: snapshots of the read models for as_of, as the embedded node takes
    # them (docs/audit.md, "Point in time"; 0: none, every as_of folds from offset 0).
    snapshot_every_events: int = EVERY_EVENTS
    snapshot_base_after_rows: int = BASE_AFTER_ROWS

    def __post_init__(self) -> None:
        if self.projection_host not in PROJECTION_HOSTS:
            raise ValueError(f"projection_host: one of {', '.join(PROJECTION_HOSTS)}, "
                             f"got {self.projection_host!r}")  # fmt: skip
        if self.run_scheduler and not self.run_projections:
            raise ValueError("run_scheduler: the scheduler reads the read models, so it needs "
                             "run_projections too")  # fmt: skip
        if not (self.run_projections or self.run_workers):
            raise ValueError("run_projections / run_workers: a node needs at least one role")
        if self.catch_up_seconds < 0:
            raise ValueError(f"catch_up_seconds: must be >= 0, got {self.catch_up_seconds!r}")

    def group_id(self, role: str) -> str:
        return f"{self.kafka.topic_prefix}{role}"


class KafkaNode(Node):
    """Start with `async with KafkaNode(config, app) as node:`."""

    config: KafkaNodeConfig
    backend: KafkaLogBackend
    mode = "kafka"

    def __init__(self, config: KafkaNodeConfig, app: App, clock: Clock | None = None):
        self.config = config
        self.node_id = config.node_id
        self.app = app
        self.clock = clock or SystemClock()
        self.host: LogProjections | FaustProjections | None = None
        self.groups: list[GroupOwnership] = []
        self._liveness: asyncio.Task[None] | None = None
        self._read_models: list[ReadModelStore | Queries] = []  # open, to close at stop

    async def start(self) -> None:
        cfg = self.config
        self.backend = await KafkaLogBackend.open(cfg.kafka, jobledger_topics(cfg.kafka))
        self.backend.tracer = self.tracer  # produce and consume spans, when tracing is on
        try:
            if cfg.run_projections:
                await self._open_read_models()
            # Joining a group takes about a second: the roles join theirs side by side.
            roles = [self._start_projections()] if cfg.run_projections else []
            if cfg.run_workers:
                roles.append(self._start_workers())
            for outcome in await asyncio.gather(*roles, return_exceptions=True):
                if isinstance(outcome, BaseException):
                    raise outcome
        except BaseException:
            await self.stop()
            raise
        log_started(self._where(), self.app.handlers, self.dispatcher,
                    brokers=cfg.kafka.bootstrap_servers, topic_prefix=cfg.kafka.topic_prefix,
                    views=str(cfg.views) if cfg.run_projections else None,
                    scheduler=cfg.run_scheduler)

    def _where(self) -> str:
        cfg = self.config
        where = f"Kafka {cfg.kafka.bootstrap_servers} ({cfg.kafka.topic_prefix}*)"
        if cfg.run_projections:
            where += f", read models {cfg.views}"
        return where + (", firing schedules" if cfg.run_scheduler else "")

    async def _open_read_models(self) -> None:
        """The read models, once known to be the topics' own (refused, or removed to be
        rebuilt, otherwise: services/node/read_model_check.py)."""
        cfg = self.config
        await fit_read_models(cfg.views, read_models_on_disk(cfg.views),
                              f"the topics {cfg.kafka.topic_prefix}* at "
                              f"{cfg.kafka.bootstrap_servers}", self.backend)
        self.store = await ReadModelStore.open(cfg.views)
        self._read_models.append(self.store)
        await record_log_source(self.store, self.backend)
        self.queries = await Queries.open(cfg.views)
        self._read_models.append(self.queries)
        self.projector = Projector(self.backend, self.store, clock=self.clock, retry=True)
        self.projector.tracer = self.tracer
        await self.projector.load()
        # Known: this process's handlers, and every type a worker declared (read models).
        task_types = TaskTypes(self.app.handlers, self.queries.declared_task_types,
                               cfg.allow_unknown_task_types)
        self._open_write_side(Actor(ActorKind.CLIENT, cfg.node_id), task_types)
        identity = await self.backend.identity()
        snapshots = Snapshots.open(cfg.views, identity.log_id if identity else None)
        self.history = History(self.backend, self.queries, self.clock, snapshots)
        self.snapshotter = Snapshotter(snapshots, cfg.views, self.projector, self.clock,
                                       cfg.snapshot_every_events, 0.0,
                                       cfg.snapshot_base_after_rows)

    async def _start_projections(self) -> None:
        """The projection host, until the read models reach the log's end (bounded), then
        the scheduler: it must not count a schedule's jobs in read models still catching up."""
        cfg = self.config
        if cfg.projection_host == "faust":
            from jobledger.services.kafka.faust_host import (  # imports faust
                FaustProjections,
                projection_app_id,
            )

            self.host = FaustProjections(self.backend, self.projector,
                                         projection_app_id(cfg.kafka.topic_prefix, cfg.node_id),
                                         cfg.group)  # fmt: skip
        else:
            self.host = LogProjections(self.backend, self.projector)
        await self.host.start()
        self.snapshotter.start()
        await self.caught_up(cfg.catch_up_seconds)
        if cfg.mark_lost_workers:
            liveness = GroupLiveness(cfg.kafka, cfg.group_id("dispatchers"), self.queries,
                                     self.publisher, self.clock, cfg.group.session_timeout_ms,
                                     cfg.node_id)  # fmt: skip
            self._liveness = spawn(liveness.run(), "worker-liveness")
        if cfg.run_scheduler:
            await self._start_scheduler()

    async def _start_workers(self) -> None:
        cfg = self.config
        self.dispatcher = Dispatcher(self.backend, self.app, self.clock, cfg.dispatcher,
                                     partitions=(),
                                     traces=self.job_traces(cfg.dispatcher.worker_id))
        self.dispatcher.reduce = logging_outcomes(self.dispatcher.reduce)  # server_log.py
        if cfg.run_projections:
            self.dispatcher.known_jobs = self.queries.finished
        await self.dispatcher.start(follow=False)
        await self._join(JOBS, "dispatchers", self.dispatcher,
                         client_id=member_client_id(cfg.kafka, cfg.dispatcher.worker_id))

    async def _start_scheduler(self) -> None:
        cfg = self.config
        settings = cfg.scheduler
        if settings.scheduler_id == SchedulerConfig().scheduler_id:  # say which node fired
            settings = replace(settings, scheduler_id=cfg.node_id)
        self.scheduler = Scheduler(self.backend, self.clock, self.queries, settings,
                                   partitions=(), tracer=self.tracer)
        await self.scheduler.start(follow=False)
        await self._join(SCHEDULES, "schedulers", self.scheduler, self._declare)

    async def _join(self, role: str, group: str, owner: Dispatcher | Scheduler,
                    after_assign: AfterAssign | None = None,
                    client_id: str | None = None) -> None:  # fmt: skip
        ownership = GroupOwnership(self.backend, role, self.config.group_id(group),
                                   owner.ownership, self.config.group, after_assign, client_id)
        self.groups.append(ownership)
        await ownership.start()

    async def _declare(self, partitions: set[int]) -> None:
        """Code-declared schedules of partitions just gained (declare skips the others)."""
        assert self.scheduler is not None
        await self.scheduler.declare(self.app.schedules)

    async def stop(self) -> None:
        """Workers first (stop picking, let running attempts finish within the grace, then
        leave the group so the others take over at once), the scheduler next, then the
        projections once they show what this node appended."""
        log_stopping(self.dispatcher)
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        if self.scheduler is not None:
            await self.scheduler.stop()
        for ownership in self.groups:
            await ownership.stop()
        self.groups = []
        await cancel_and_wait(self._liveness)
        if self.host is not None:
            await self.publisher.drain()  # commands this node appended
            await self.caught_up(SETTLE_SECONDS)
            await self.snapshotter.stop()
            await self.host.stop()
            self.host = None
        # Also after a start that failed before the host started: an open connection keeps
        # its thread, and the process, alive.
        while self._read_models:
            await self._read_models.pop().close()
        await self.backend.close()
        log_stopped()

    def log_writable(self) -> bool:
        return not self.backend.closed

    def crashed(self) -> list[str]:
        mine = self.host.crashed() if self.host is not None else []
        mine += crashed([self._liveness] if self._liveness is not None else [])
        for ownership in self.groups:
            mine += ownership.crashed()
        if not self.config.run_projections:
            return mine + (self.dispatcher.crashed() if self.dispatcher else [])
        return super().crashed() + mine + self.snapshotter.crashed()
