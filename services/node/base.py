"""What every node shares, whatever its log: the pieces the API serves and how they are wired.

A node is one process's share of jobledger. `EmbeddedNode` (services/node/embedded.py) runs all of
it over one SQLite file; `KafkaNode` (services/node/kafka.py) runs the roles it is given
over Kafka topics. The API (api/app.py) serves any started node that has projections.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, Self

from opentelemetry.trace import Tracer

from jobledger.projections.queries import Queries
from jobledger.projections.store import ReadModelStore
from jobledger.schemas import Actor, WorkerStatus
from jobledger.schemas.api import ClusterInfo, PartitionInfo
from jobledger.schemas.common import to_ms
from jobledger.schemas.envelope import JOBS, SCHEDULES, TOPICS
from jobledger.services.handlers.app import App
from jobledger.services.history.asof import History
from jobledger.services.log.protocol import LogBackend
from jobledger.services.runtime.clock import Clock
from jobledger.services.runtime.dispatcher import Dispatcher
from jobledger.services.runtime.projector import TOPIC_OF_MODEL, Projector
from jobledger.services.schedules.commands import ScheduleCommands
from jobledger.services.schedules.scheduler import Scheduler
from jobledger.services.security.commands import KeyCommands
from jobledger.services.security.users import UserCommands
from jobledger.services.telemetry.jobs import JobTraces
from jobledger.services.telemetry.setup import Telemetry
from jobledger.services.write.commands import Commands
from jobledger.services.write.producer import Producer
from jobledger.services.write.publisher import AppendTimer, Publisher
from jobledger.services.write.task_types import TaskTypes

SETTLE_SECONDS = 10.0  # at stop, how long the projections may take to apply our appends


class NodeSettings(Protocol):
    max_projection_lag_ms: int  # /health answers 503 degraded beyond this
    allow_unknown_task_types: bool  # enqueue tasks of types no handler is known for
    max_payload_depth: int  # arrays and objects a payload may nest (PAYLOAD_TOO_DEEP beyond)
    min_schedule_interval: float  # seconds: a shorter interval trigger is INVALID_TRIGGER
    telemetry: Telemetry | None  # OpenTelemetry traces and metrics; None: off


class Node:
    """A node the API can serve. Subclasses open the backend and the read models in start()
    and call `_open_write_side` once the projector exists."""

    config: NodeSettings
    app: App
    clock: Clock
    backend: LogBackend
    store: ReadModelStore
    queries: Queries
    history: History  # the read models at a past moment (as_of)
    projector: Projector
    publisher: Publisher
    producer: Producer
    commands: Commands
    schedules: ScheduleCommands
    keys: KeyCommands
    users: UserCommands
    dispatcher: Dispatcher | None = None
    scheduler: Scheduler | None = None
    mode: str  # embedded | kafka
    node_id: str  # names this node in /api/v1/cluster

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    def _open_write_side(self, actor: Actor, task_types: TaskTypes) -> None:
        """What REST commands append through: publisher, producer, commands, schedules,
        keys, users; task_types says which types they accept."""
        self.publisher = Publisher(self.backend, self.clock, actor)
        self.producer = Producer(self.publisher, self.clock)
        self.commands = Commands(self.publisher, self.producer, self.projector, self.queries,
                                 task_types, tracer=self.tracer)
        self.schedules = ScheduleCommands(self.publisher, self.projector, self.queries, self.clock,
                                          task_types, self.config.min_schedule_interval)
        self.keys = KeyCommands(self.publisher, self.projector, self.queries, self.clock)
        self.users = UserCommands(self.publisher, self.projector, self.queries)

    @property
    def tracer(self) -> Tracer | None:
        telemetry = self.config.telemetry
        return telemetry.tracer if telemetry is not None else None

    def job_traces(self, worker_id: str) -> JobTraces | None:
        """What the dispatcher tells its jobs' spans, None when tracing is off."""
        telemetry = self.config.telemetry
        if telemetry is None:
            return None
        return JobTraces(telemetry, worker_id)

    def time_appends(self, timer: AppendTimer | None) -> None:
        """Tell `timer` how long each append of this node's publishers took."""
        parts = (self, self.dispatcher, self.scheduler)
        for publisher in [part.publisher for part in parts if part is not None]:
            publisher.timer = timer

    def log_writable(self) -> bool:
        """Can this node append to its log? /health is degraded when it cannot."""
        raise NotImplementedError

    def is_leader(self) -> bool:
        """Does this node decide for at least one partition of the jobs topic?"""
        return self.dispatcher is not None and bool(self.dispatcher.partitions)

    def faults(self) -> list[str]:
        """Why this node cannot do all of its work now (a full disk), one reason each, as
        /health tells them; each part retries by itself (services/runtime/faults.py)."""
        reasons = self.projector.faults.reasons()
        if self.dispatcher is not None:
            reasons += self.dispatcher.faults.reasons()
        if self.scheduler is not None:
            reasons += self.scheduler.faults.reasons()
        return reasons

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
                    stamp = first.timestamp_ms
                    oldest = stamp if oldest is None else min(oldest, stamp)
        if oldest is None:
            return 0
        return max(0, to_ms(self.clock.now()) - oldest)

    async def partition_owners(self) -> dict[str, dict[int, str]]:
        """Who decides for each partition of the jobs and schedules topics (by topic).
        Jobs: this node's own dispatcher, else the alive worker whose latest heartbeat
        named it (the newest beat wins while a rebalance is told). Schedules: this node's
        scheduler only; another node's is not on the log."""
        jobs: dict[int, str] = {}
        alive = [w for w in await self.queries.workers() if w.status == WorkerStatus.ALIVE]
        for worker in sorted(alive, key=lambda w: w.last_heartbeat):
            jobs.update(dict.fromkeys(worker.partitions, worker.worker_id))
        if self.dispatcher is not None:
            jobs.update(dict.fromkeys(self.dispatcher.partitions,
                                      self.dispatcher.config.worker_id))
        schedules: dict[int, str] = {}
        if self.scheduler is not None:
            schedules = dict.fromkeys(self.scheduler.partitions,
                                      self.scheduler.config.scheduler_id)
        return {JOBS: jobs, SCHEDULES: schedules}

    async def cluster(self) -> ClusterInfo:
        """Every partition: its owner, its end and how far this node's read models are."""
        owners = await self.partition_owners()
        partitions = []
        for topic in TOPICS:
            models = [m for m, t in TOPIC_OF_MODEL.items() if t == topic]
            for partition, end in sorted((await self.backend.topic(topic).end_offsets()).items()):
                projected = min(self.projector.positions[m].get(partition, 0) for m in models)
                partitions.append(PartitionInfo(
                    topic=topic, partition=partition, owner=owners.get(topic, {}).get(partition),
                    end_offset=end, projected=projected, lag=max(0, end - projected)))
        return ClusterInfo(mode=self.mode, node_id=self.node_id, partitions=partitions)

    async def caught_up(self, timeout: float) -> bool:
        """Wait until the projections have applied every topic up to its end as of now;
        False if that takes longer than timeout seconds."""
        try:
            async with asyncio.timeout(timeout):
                for model, topic in TOPIC_OF_MODEL.items():
                    for partition, end in (await self.backend.topic(topic).end_offsets()).items():
                        if end:
                            await self.projector.wait_for(model, partition, end - 1)
        except TimeoutError:
            return False
        return True

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
