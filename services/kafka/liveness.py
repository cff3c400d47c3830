"""Workers that died, told by the consumer group (Kafka mode).

A worker killed with SIGKILL appends nothing, so the workers read model would show it
alive for good. Its group membership ends, though: after one session timeout the group
coordinator drops it. Each worker joins the dispatchers group under a client id naming its
worker id (`member_client_id`), and an API node compares the group's members with the
workers its read model shows alive: a worker missing from the group at every look for
`lost_after` seconds (by this node's clock) is marked lost with `WorkerLost`.

Several API nodes may each append a `WorkerLost` for one worker: the reducer applies only
the first (lost is final), so the read models agree. A worker that is slow to join (a long
rebalance) is only missed for a while: `lost_after` is three session timeouts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient

from jobledger.projections.queries import Queries
from jobledger.schemas import Actor, ActorKind, WorkerLost
from jobledger.services.log.kafka import KafkaConfig
from jobledger.services.log.protocol import LogError
from jobledger.services.runtime.clock import Clock
from jobledger.services.runtime.server_log import log_worker_lost
from jobledger.services.write.publisher import Publisher

log = logging.getLogger("jobledger.liveness")
LOST_AFTER_SESSIONS = 3  # missing from the group this many session timeouts: lost


def member_client_id(config: KafkaConfig, worker_id: str) -> str:
    """The client id a worker's group consumer joins with."""
    return f"{config.client_id}-worker-{worker_id}"


class GroupLiveness:
    def __init__(self, config: KafkaConfig, group_id: str, queries: Queries,
                 publisher: Publisher, clock: Clock, session_timeout_ms: int,
                 node_id: str):  # fmt: skip
        self.config = config
        self.actor = Actor(ActorKind.DISPATCHER, node_id)
        self.group_id = group_id
        self.queries = queries
        self.publisher = publisher
        self.clock = clock
        self.every = session_timeout_ms / 1000
        self.lost_after = LOST_AFTER_SESSIONS * self.every
        self._missing_since: dict[str, float] = {}  # worker -> first look that missed it

    async def run(self) -> None:
        admin = AIOKafkaAdminClient(**self.config.client_settings())
        await admin.start()
        try:
            while True:
                await self.clock.sleep(self.every)
                try:
                    members = await self._members(admin)
                except Exception as error:  # the broker is unreachable: look again later
                    log.warning("cannot describe group %s: %r", self.group_id, error)
                    continue
                if members is not None:
                    await self.check(members)
        finally:
            await admin.close()

    async def _members(self, admin: AIOKafkaAdminClient) -> list[str] | None:
        """Client ids (or member ids, which begin with the client id) of the group's
        members; None while the group is rebalancing or unknown."""
        [response] = await admin.describe_consumer_groups([self.group_id])
        [(error, _group, state, _type, _protocol, members)] = response.groups
        if error or state != "Stable":
            return None
        return [client or member for member, client, *_ in members]

    async def check(self, members: Iterable[str]) -> list[str]:
        """Mark lost the alive workers missing from `members` for lost_after seconds;
        returns the ones marked now."""
        members = list(members)
        now = self.clock.now().timestamp()
        starts = await self.queries.alive_workers()
        alive = list(starts)
        for gone in self._missing_since.keys() - set(alive):
            del self._missing_since[gone]  # stopped, or marked lost meanwhile
        lost = []
        for worker_id in alive:
            mine = member_client_id(self.config, worker_id)
            if any(m == mine or m.startswith(mine + "-") for m in members):
                self._missing_since.pop(worker_id, None)
                continue
            since = self._missing_since.setdefault(worker_id, now)
            if now - since >= self.lost_after:
                lost.append(worker_id)
        for worker_id in lost:
            del self._missing_since[worker_id]
            try:
                await self.publisher.publish(WorkerLost(worker_id=worker_id), worker_id,
                                             actor=self.actor, causation_id=starts[worker_id],
                                             correlation_id=starts[worker_id])
            except LogError as error:
                log.warning("cannot mark worker %s lost: %s", worker_id, error)
            else:
                log_worker_lost(worker_id, f"missing from consumer group {self.group_id} for "
                                f"{self.lost_after:g}s; its jobs' leases expire")
        return lost
