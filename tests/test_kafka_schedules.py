"""Two scheduler processes (`jobledger worker --schedules`) on one set of topics: the
schedules partitions are split between them, move when the second one joins and again
when the first is SIGKILLed, and still every fire time of every schedule is decided once:
one ScheduleFired (or one skip) per fire time, one job per fire, none lost."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from jobledger.projections.schedules import schedule_of_key
from jobledger.schemas import JOBS, SCHEDULES, Envelope, decode
from jobledger.schemas.common import to_ms
from jobledger.services.log.kafka import KafkaConfig, KafkaLogBackend, jobledger_topics
from tests.support.kafka_app import TICKS
from tests.support.kafka_broker import TansuBroker, unique_prefix
from tests.support.kafka_harness import PARTITIONS, kafka_config
from tests.support.kafka_procs import JobledgerProcess, WorkerProcess, kafka_env
from tests.support.procs import poll

pytestmark = pytest.mark.slow

ARGS = ("--app", "kafka_app:scheduled", "--schedules", "--concurrency", "4",
        "--shutdown-grace-seconds", "1", "--log-level", "info")  # fmt: skip
FIRES_PER_PHASE = 2  # seconds of firing after each change of ownership


def _scheduler(name: str, workdir: Path, env: dict[str, str]) -> WorkerProcess:
    return WorkerProcess(name, workdir, env, *ARGS, "--views", str(workdir / f"{name}.db"))


def _took_over(proc: WorkerProcess, count: int = 1) -> bool:
    proc.check_running()
    return proc.output().count("took over schedules") >= count


def test_two_schedulers_fire_each_schedule_time_exactly_once(
    tmp_path: Path, kafka_broker: TansuBroker
) -> None:
    prefix = unique_prefix()
    env = kafka_env(kafka_broker, prefix)
    procs: list[JobledgerProcess] = []
    try:
        first = _scheduler("scheduler-first", tmp_path, env)
        procs.append(first)
        poll(lambda: _took_over(first, PARTITIONS), 30)
        fired = _fires_so_far(kafka_config(kafka_broker, prefix))
        poll(lambda: _fires_so_far(kafka_config(kafka_broker, prefix)) >= fired + TICKS * 2, 20)
        second = _scheduler("scheduler-second", tmp_path, env)
        procs.append(second)
        poll(lambda: _took_over(second), 30)  # the partitions were split
        _wait_fires(kafka_config(kafka_broker, prefix), FIRES_PER_PHASE)
        first.kill()  # mid-fire, maybe between a job's append and its ScheduleFired
        poll(lambda: _took_over(second, 1 + PARTITIONS // 2), 30)  # it has them all now
        _wait_fires(kafka_config(kafka_broker, prefix), FIRES_PER_PHASE)
    finally:
        for proc in reversed(procs):
            proc.stop()

    schedule_events, enqueued = asyncio.run(_read_topics(kafka_config(kafka_broker, prefix)))
    fired = [e for e in schedule_events if e.type == "ScheduleFired"]
    assert len({e.actor.id for e in fired}) == 2, "both schedulers fired"
    for n in range(TICKS):
        _check_once_each(f"every_second_{n}", schedule_events, enqueued)


def _check_once_each(schedule_id: str, schedule_events: list[Envelope],
                     enqueued: list[Envelope]) -> None:  # fmt: skip
    mine = [e for e in schedule_events if getattr(e.event, "schedule_id", None) == schedule_id]
    fire_times = [to_ms(e.event.fire_time) for e in mine if e.type == "ScheduleFired"]  # type: ignore[union-attr]
    twice = [t for t, n in Counter(fire_times).items() if n > 1]
    assert not twice, f"{schedule_id}: fire times decided twice: {twice}"
    skipped: set[int] = set()
    for e in mine:
        if e.type == "ScheduleSkipped":
            first = to_ms(e.event.fire_time)  # type: ignore[union-attr]
            last = to_ms(e.event.last_fire_time or e.event.fire_time)  # type: ignore[union-attr]
            skipped.update(range(first, last + 1, 1000))
    assert not skipped & set(fire_times), f"{schedule_id}: a fire time both fired and skipped"
    every = set(range(min(fire_times), max(fire_times) + 1, 1000))
    assert every <= set(fire_times) | skipped, f"{schedule_id}: fire times lost"
    assert len(fire_times) >= 3 * FIRES_PER_PHASE
    # One job per fire: its id comes from the fire time, and its JobEnqueued is on the log.
    jobs = {e.event.job_id for e in enqueued  # type: ignore[union-attr]
            if schedule_of_key(e.event.idempotency_key) == schedule_id}  # type: ignore[union-attr]
    assert {e.event.job_id for e in mine if e.type == "ScheduleFired"} <= jobs  # type: ignore[union-attr]


async def _read_topics(config: KafkaConfig) -> tuple[list[Envelope], list[Envelope]]:
    """(schedule events, JobEnqueued events) on the topics, every partition from 0."""
    backend = await KafkaLogBackend.open(config, jobledger_topics(config))
    try:
        out: dict[str, list[Envelope]] = {SCHEDULES: [], JOBS: []}
        for topic in out:
            log = backend.topic(topic)
            for partition, end in (await log.end_offsets()).items():
                offset = 0
                while offset < end:
                    records = await log.read(partition, offset, limit=end - offset)
                    out[topic] += [decode(r.value) for r in records]
                    offset = records[-1].offset + 1
        return out[SCHEDULES], [e for e in out[JOBS] if e.type == "JobEnqueued"]
    finally:
        await backend.close()


def _fires_so_far(config: KafkaConfig) -> int:
    schedule_events, _ = asyncio.run(_read_topics(config))
    return sum(e.type == "ScheduleFired" for e in schedule_events)


def _wait_fires(config: KafkaConfig, seconds: int) -> None:
    """Until every schedule has fired `seconds` more times than now."""
    start = _fires_so_far(config)
    poll(lambda: _fires_so_far(config) >= start + TICKS * seconds, 20, interval=0.25)
