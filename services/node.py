"""The embedded node: one process running the log, the projections, the dispatcher with its
worker slots, and (optionally) the HTTP API, over one SQLite file."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from jobledger.projections.projector import TOPIC_OF_MODEL, Projector
from jobledger.projections.queries import Queries
from jobledger.projections.store import ReadModelStore
from jobledger.schemas import JOBS, LOGS, SCHEDULES, WORKERS, Actor, ActorKind, WorkerLost
from jobledger.schemas.common import to_ms

from .app import App
from .clock import Clock, SystemClock
from .commands import Commands
from .dispatcher import Dispatcher, DispatcherConfig
from .producer import Producer
from .publisher import Publisher
from .scheduler import Scheduler, SchedulerConfig
from .schedules import ScheduleCommands
from .sqlite_log import SQLiteLogBackend


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


class EmbeddedNode:
    """Start with `async with EmbeddedNode(config, app) as node:`."""

    def __init__(self, config: NodeConfig, app: App, clock: Clock | None = None):
        self.config = config
        self.app = app
        self.clock = clock or SystemClock()

    async def start(self) -> None:
        cfg = self.config
        partitions = {JOBS: cfg.partitions, LOGS: cfg.partitions, WORKERS: 1, SCHEDULES: 1}
        self.backend = await SQLiteLogBackend.open(cfg.db, partitions)
        self.store = await ReadModelStore.open(views_path(cfg.db))
        self.queries = await Queries.open(views_path(cfg.db))
        self.projector = Projector(self.backend, self.store)
        await self.projector.load()
        self.publisher = Publisher(self.backend, self.clock, Actor(ActorKind.CLIENT, "embedded"))
        self.producer = Producer(self.publisher, self.clock)
        self.commands = Commands(self.publisher, self.producer, self.projector, self.queries)
        self.dispatcher: Dispatcher | None = None
        if cfg.run_workers:
            self.dispatcher = Dispatcher(self.backend, self.app, self.clock, cfg.dispatcher)
            self.dispatcher.known_jobs = self.queries.finished
            # Start from the read model's snapshot, read before the projector moves on.
            self.dispatcher.load(
                await self.store.load_unfinished_jobs(), await self.store.load_queues(),
                self.projector.positions["jobs"],
            )
        self.schedules = ScheduleCommands(self.publisher, self.projector, self.queries, self.clock)
        self.scheduler: Scheduler | None = None
        if cfg.run_scheduler:
            self.scheduler = Scheduler(self.backend, self.clock, self.queries, cfg.scheduler)
            self.scheduler.load((await self.store.load_schedules()).values(),
                                self.projector.positions["schedules"])
        self.projector.start()
        if self.dispatcher is not None:
            await self.dispatcher.start()
        if self.scheduler is not None:
            await self.scheduler.catch_up()
            for partition, offset in await self.scheduler.declare(self.app.schedules):
                # Read-your-writes from the start: the API shows declared schedules at once.
                await asyncio.wait_for(self.projector.wait_for("schedules", partition, offset), 10)
            await self.scheduler.start()
        await self._mark_lost_workers()

    async def stop(self) -> None:
        if self.dispatcher is not None:
            await self.dispatcher.stop()  # first: it must stop picking at once
        if self.scheduler is not None:
            await self.scheduler.stop()
        await self.publisher.drain()
        await self._settle()
        await self.projector.stop()
        await self.queries.close()
        await self.store.close()
        await self.backend.close()

    async def _mark_lost_workers(self) -> None:
        """Workers still alive in the read model ran in an earlier process on this file
        (the file lock allows one writer): that process is gone, so they are lost."""
        mine = self.dispatcher.config.worker_id if self.dispatcher else None
        for worker in await self.queries.workers():
            if worker["status"] == "alive" and worker["worker_id"] != mine:
                event = WorkerLost(worker_id=worker["worker_id"])
                self.publisher.publish(event, worker["worker_id"],
                                       actor=Actor(ActorKind.DISPATCHER, mine or "embedded"))

    def crashed(self) -> list[str]:
        """Background tasks that died (logged when they did); /health reports them."""
        return (self.projector.crashed() + (self.dispatcher.crashed() if self.dispatcher else [])
                + (self.scheduler.crashed() if self.scheduler else []))

    async def projection_lag_ms(self) -> int:
        """How old the oldest record not yet applied by the projections is (0: caught up)."""
        oldest: int | None = None
        for model, topic in TOPIC_OF_MODEL.items():
            log = self.backend.topic(topic)
            for partition, end in (await log.end_offsets()).items():
                done = self.projector.positions[model].get(partition, 0)
                if done < end:
                    (first,) = await log.read(partition, done, limit=1)
                    oldest = first.timestamp_ms if oldest is None else min(oldest, first.timestamp_ms)
        if oldest is None:
            return 0
        return max(0, to_ms(self.clock.now()) - oldest)

    async def _settle(self) -> None:
        """Let the projections apply what this node appended, so the read model is current."""
        for model, topic in TOPIC_OF_MODEL.items():
            for partition, end in (await self.backend.topic(topic).end_offsets()).items():
                if end:
                    try:
                        await asyncio.wait_for(self.projector.wait_for(model, partition, end - 1), 10)
                    except TimeoutError:
                        return

    async def __aenter__(self) -> EmbeddedNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
