"""Read-side queries over the read models, on a connection of their own (WAL lets them
read while the projector writes, and they never see half a batch)."""

from __future__ import annotations

from collections.abc import Awaitable, Collection, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite
import msgspec

from jobledger.schemas.api import (
    MinuteStats,
    Progress,
    QueueDepth,
    QueueInfo,
    QueueStats,
    RunDetail,
    RunLog,
    RunsEnded,
    RunSummary,
    Stats,
    TaskDetail,
    TaskSummary,
    TaskView,
    WorkerInfo,
)
from jobledger.schemas.common import iso_ms, to_ms
from jobledger.schemas.lifecycle import (
    TERMINAL,
    JobStatus,
    RunStatus,
    ScheduleStatus,
    WorkerStatus,
)
from jobledger.schemas.schedules import ScheduleView

from .jobs import JobState
from .keys import KeyState, key_from_row
from .rows import job_from_row, job_row
from .schedules import ScheduleState, schedule_from_row, schedule_of_key, schedule_view
from .stats import HIGH_PRIORITY, MINUTE_MS, NORMAL_PRIORITY
from .store import IN_CHUNK, Row, fetch_all
from .users import UserState, user_from_row

_list_of_str = msgspec.json.Decoder(list[str])
_list_of_int = msgspec.json.Decoder(list[int])
_AFTER_ALL = "\U0010ffff"  # sorts after any character a prefix can be followed by
S = JobStatus

# A status as the read model stores it (its value) -> the enum member: a dict lookup per
# row, where calling the enum costs ten times as much.
_JOB_STATUS: dict[str, JobStatus] = {s.value: s for s in JobStatus}
_RUN_STATUS: dict[str, RunStatus] = {s.value: s for s in RunStatus}
_WORKER_STATUS: dict[str, WorkerStatus] = {s.value: s for s in WorkerStatus}


def _sql_list(statuses: Iterable[JobStatus]) -> str:
    """Statuses as an SQL list of literals: `'a', 'b'`."""
    return ", ".join(f"'{s}'" for s in sorted(statuses))


_FINISHED = _sql_list(TERMINAL)
_UNFINISHED = _sql_list({S.SCHEDULED, S.PENDING, S.IN_PROGRESS})
# Unfinished jobs per queue and status, one column per count of QueueInfo, in its field
# order (the fields are named for the statuses they count).
_QUEUE_COUNTS = [JobStatus(name) for name in ("pending", "scheduled", "in_progress")]
_PENDING_BANDS = (  # high, normal, low: the bands of projections/stats.py priority_band
    f"priority >= {HIGH_PRIORITY}", f"priority >= {NORMAL_PRIORITY} AND priority < {HIGH_PRIORITY}",
    f"priority < {NORMAL_PRIORITY}")
_COUNTS_PER_QUEUE = (
    "SELECT queue, " + ", ".join(f"SUM(status = '{s}')" for s in _QUEUE_COUNTS) + ", "
    + ", ".join(f"SUM(status = '{JobStatus.PENDING}' AND {band})" for band in _PENDING_BANDS)
    + f" FROM jobs WHERE status IN ({_UNFINISHED}) GROUP BY queue"
)

_TASK_COLUMNS = (
    "job_id, task_type, queue, status, priority, payload, created_at, updated_at, run_at,"
    " started_at, finished_at, result, error, retry_count, max_retries, timeout_seconds,"
    " attempt, worker_id, idempotency_key, cancel_requested, processed, total, failed"
)


def _task_detail(row: Any) -> TaskDetail:
    """The TaskDetail of a row of _TASK_COLUMNS, built from the row (no JobState between)."""
    (task_id, task_type, queue, status, priority, payload, created_at, updated_at, run_at,
     started_at, finished_at, result, error, retry_count, max_retries, timeout_seconds,
     attempt, worker_id, idempotency_key, cancel_requested, processed, total, failed) = row
    return TaskDetail(
        task_id=task_id, task_type=task_type, queue=queue, status=_JOB_STATUS[status],
        priority=priority, payload=msgspec.Raw(payload), created_at=iso_ms(created_at) or "",
        updated_at=iso_ms(updated_at) or "", scheduled_at=iso_ms(run_at),
        started_at=iso_ms(started_at), finished_at=iso_ms(finished_at),
        result=msgspec.Raw(result) if result is not None else None, error=error,
        retry_count=retry_count, max_retries=max_retries, timeout_seconds=timeout_seconds,
        attempt=attempt, worker_id=worker_id, idempotency_key=idempotency_key,
        cancel_requested=bool(cancel_requested),
        progress=Progress(processed=processed, total=total, failed=failed),
    )


_TASK_FIELDS = [JobState.__struct_fields__.index(c.strip()) for c in _TASK_COLUMNS.split(",")]


def task_of_state(state: JobState) -> TaskDetail:
    """The TaskDetail of a job state folded outside the read models (a point in time)."""
    row = job_row(state, 0)
    return _task_detail([row[i] for i in _TASK_FIELDS])


_RUN_COLUMNS = (
    "run_id, job_id, attempt, task_type, status, worker_id, started_at, ended_at, processed,"
    " total, failed, error"
)


def _run_summary(r: Any) -> RunSummary:
    started, ended = r[6], r[7]
    return RunSummary(
        run_id=r[0], task_id=r[1], attempt=r[2], task_type=r[3], status=_RUN_STATUS[r[4]],
        worker_id=r[5],
        started_at=iso_ms(started), ended_at=iso_ms(ended),
        duration_ms=ended - started if started is not None and ended is not None else None,
        progress=Progress(processed=r[8], total=r[9], failed=r[10]), error=r[11],
    )


class Queries:
    def __init__(self, db: aiosqlite.Connection):
        self.db = db

    @classmethod
    async def open(cls, path: str | Path) -> Queries:
        db = await aiosqlite.connect(path)
        await db.execute("PRAGMA query_only=1")
        return cls(db)

    async def close(self) -> None:
        await self.db.close()

    def _fetch(self, sql: str, parameters: Iterable[Any] | None = None) -> Awaitable[list[Row]]:
        return fetch_all(self.db, sql, parameters)

    async def job(self, job_id: str) -> JobState | None:
        rows = await self._fetch("SELECT * FROM jobs WHERE job_id = ?", (job_id,))
        return job_from_row(rows[0]) if rows else None

    async def task(self, job_id: str) -> TaskDetail | None:
        """The job as GET /api/v1/tasks/{id} shows it: max_retries and timeout_seconds as
        enqueued (None when the job gave none)."""
        rows = await self._fetch(
            f"SELECT {_TASK_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,))
        return _task_detail(rows[0]) if rows else None

    async def finished(self, job_ids: Collection[str]) -> set[str]:
        """Which of these job ids the read model shows finished. Only finished ones: a job
        the projector applied before the dispatcher read it is new to the dispatcher, and
        must not be taken for a duplicate."""
        ids = list(job_ids)
        found: set[str] = set()
        for i in range(0, len(ids), IN_CHUNK):
            chunk = ids[i : i + IN_CHUNK]
            rows = await self._fetch(
                f"SELECT job_id FROM jobs WHERE job_id IN ({','.join('?' * len(chunk))})"
                f" AND status IN ({_FINISHED})", chunk
            )
            found.update(r[0] for r in rows)
        return found

    async def jobs(
        self, *, status: JobStatus | None = None, task_type: str | None = None,
        queue: str | None = None, created_after: datetime | None = None,
        created_before: datetime | None = None, search: str | None = None,
        limit: int = 100, offset: int = 0, starting_after: str | None = None,
    ) -> list[TaskSummary]:
        """Task summaries, newest first (ties by id, descending); with starting_after (a
        task id), only those listed after that task, so a reader paging by the last id it
        saw meets each task once, whatever is enqueued or changes status meanwhile.
        search: a prefix of the task id or of the idempotency key (both found through an
        index: the primary key, jobs_by_key)."""
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("status", status), ("task_type", task_type), ("queue", queue)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if created_after is not None:
            where.append("created_at >= ?")
            args.append(to_ms(created_after))
        if created_before is not None:
            where.append("created_at < ?")
            args.append(to_ms(created_before))
        if search is not None:
            # A prefix as a range of the BINARY collation: after every string it starts.
            where.append("((job_id >= ? AND job_id < ?)"
                         " OR (idempotency_key >= ? AND idempotency_key < ?))")
            args.extend([search, search + _AFTER_ALL] * 2)
        if starting_after is not None:
            where.append("(created_at, job_id) < "
                         "(SELECT created_at, job_id FROM jobs WHERE job_id = ?)")
            args.append(starting_after)
        sql = (
            "SELECT job_id, task_type, queue, status, priority, created_at, updated_at,"
            " retry_count, processed, total, failed FROM jobs"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY created_at DESC, job_id DESC LIMIT ? OFFSET ?"
        )
        rows = await self._fetch(sql, (*args, limit, offset))
        return [
            TaskSummary(r[0], r[1], r[2], _JOB_STATUS[r[3]], r[4], iso_ms(r[5]) or "",
                        iso_ms(r[6]) or "", r[7], Progress(r[8], r[9], r[10]))
            for r in rows
        ]

    async def stats(self, now_ms: int) -> Stats:
        """Stats as of now_ms (the caller's clock decides what "the last hour" is)."""
        by_status: dict[str, int] = {}
        by_type: dict[str, dict[str, int]] = {}
        for task_type, status, count in await self._fetch(
            "SELECT task_type, status, count FROM job_counts WHERE count != 0"
        ):
            by_status[status] = by_status.get(status, 0) + count
            by_type.setdefault(task_type, {})[status] = count
        depth = dict.fromkeys(("high", "normal", "low"), 0)
        depth.update(await self._fetch("SELECT band, count FROM queue_depth"))
        since = (now_ms - 3_600_000) // MINUTE_MS * MINUTE_MS
        ended: dict[str, int] = dict(await self._fetch(
            "SELECT outcome, SUM(count) FROM runs_ended WHERE minute >= ? GROUP BY outcome",
            (since,),
        ))
        processing = await self._fetch("SELECT total_ms, runs FROM processing")
        total_ms, runs = processing[0] if processing else (0, 0)
        workers: dict[str, int] = dict(await self._fetch(
            "SELECT status, COUNT(*) FROM workers GROUP BY status"))
        return Stats(
            pending_count=by_status.get(S.PENDING, 0),
            in_progress_count=by_status.get(S.IN_PROGRESS, 0),
            scheduled_count=by_status.get(S.SCHEDULED, 0),
            completed_count=by_status.get(S.COMPLETED, 0),
            failed_count=by_status.get(S.FAILED, 0),
            dead_letter_count=by_status.get(S.DEAD_LETTER, 0),
            cancelled_count=by_status.get(S.CANCELLED, 0),
            completed_last_hour=ended.get(RunStatus.COMPLETED, 0),
            failed_last_hour=ended.get(RunStatus.FAILED, 0),
            worker_count=workers.get(WorkerStatus.ALIVE, 0),
            avg_processing_time_ms=round(total_ms / runs, 3) if runs else 0.0,
            queue_depth_by_priority=QueueDepth(**depth),
            by_task_type=by_type,
            lost_worker_count=workers.get(WorkerStatus.LOST, 0),
            last_hour_by_task_type=await self._ended_by("task_type", since),
            by_queue=await self._by_queue(since),
            per_minute=await self._per_minute(now_ms),
        )

    async def _ended_by(self, column: str, since: int) -> dict[str, RunsEnded]:
        """Runs ended since the minute `since`, per task_type or queue (runs_ended_by)."""
        out: dict[str, RunsEnded] = {}
        for key, outcome, count in await self._fetch(
            f"SELECT {column}, outcome, SUM(count) FROM runs_ended_by WHERE minute >= ?"
            f" GROUP BY {column}, outcome", (since,),
        ):
            ended = out.setdefault(key, RunsEnded(completed=0, failed=0))
            if outcome == RunStatus.COMPLETED:
                ended.completed = count
            elif outcome == RunStatus.FAILED:
                ended.failed = count
        return out

    async def _by_queue(self, since: int) -> dict[str, QueueStats]:
        """Every queue with tasks, a pause or a resume, or runs in the last hour, by name."""
        paused: dict[str, int] = dict(await self._fetch("SELECT queue, paused FROM queues"))
        counts: dict[str, dict[str, int]] = {}
        for queue, status, count in await self._fetch(
            "SELECT queue, status, count FROM queue_counts WHERE count != 0"
        ):
            counts.setdefault(queue, {})[status] = count
        ended = await self._ended_by("queue", since)
        none = RunsEnded(completed=0, failed=0)
        return {
            queue: QueueStats(paused=bool(paused.get(queue, False)),
                              counts=counts.get(queue, {}), last_hour=ended.get(queue, none))
            for queue in sorted(paused.keys() | counts.keys() | ended.keys())
        }

    async def _per_minute(self, now_ms: int) -> list[MinuteStats]:
        """The last 60 minutes: runs ended in each, and the pending tasks at each one's
        end, which is the pending count now less the moves after that minute."""
        current = now_ms // MINUTE_MS * MINUTE_MS
        first = current - 59 * MINUTE_MS
        ended: dict[int, dict[str, int]] = {}
        for minute, outcome, count in await self._fetch(
            "SELECT minute, outcome, count FROM runs_ended WHERE minute >= ?", (first,)
        ):
            ended.setdefault(minute, {})[outcome] = count
        # The count now and the moves in one statement, so one snapshot: read apart, a
        # batch committed in between (a pick) drew the whole hour one task too high.
        rows = await self._fetch(
            f"SELECT NULL, COALESCE(SUM(count), 0) FROM job_counts WHERE status = '{S.PENDING}'"
            " UNION ALL SELECT minute, SUM(delta) FROM pending_moves WHERE minute > ?"
            " GROUP BY minute", (first,),
        )
        pending_now = next(n for minute, n in rows if minute is None)
        moves = {minute: delta for minute, delta in rows if minute is not None}
        later = sum(delta for minute, delta in moves.items() if minute > current)
        out = []
        for minute in range(current, first - 1, -MINUTE_MS):  # newest first, summing moves
            counts = ended.get(minute, {})
            out.append(MinuteStats(
                minute=iso_ms(minute) or "", completed=counts.get(RunStatus.COMPLETED, 0),
                failed=counts.get(RunStatus.FAILED, 0), pending=pending_now - later))
            later += moves.get(minute, 0)
        out.reverse()
        return out

    async def alive_workers(self) -> dict[str, str | None]:
        """The workers the read model shows alive, each with its WorkerStarted's event id
        (None: started before the read models kept it): what a WorkerLost cites."""
        rows = await self._fetch("SELECT worker_id, started_event_id FROM workers"
                                 " WHERE status = 'alive'")
        return dict(rows)

    async def workers(self) -> list[WorkerInfo]:
        rows = await self._fetch(
            "SELECT worker_id, registered_at, last_heartbeat, current_jobs, cpu_percent,"
            " memory_mb, status, hostname, pid, concurrency, partitions FROM workers"
            " ORDER BY registered_at"
        )
        return [
            WorkerInfo(
                worker_id=r[0], registered_at=iso_ms(r[1]) or "",
                last_heartbeat=iso_ms(r[2]) or "", current_tasks=_list_of_str.decode(r[3]),
                cpu_usage_percent=r[4], memory_usage_mb=r[5], status=_WORKER_STATUS[r[6]],
                hostname=r[7], pid=r[8], concurrency=r[9],
                partitions=_list_of_int.decode(r[10]),
            )
            for r in rows
        ]

    async def declared_task_types(self) -> list[str]:
        """Every task type any worker has declared (WorkerStarted), sorted."""
        rows = await self._fetch(
            "SELECT DISTINCT task_type FROM worker_task_types ORDER BY task_type")
        return [r[0] for r in rows]

    async def queues(self) -> list[QueueInfo]:
        """Every queue that is paused or was ever paused, or has unfinished jobs, by name."""
        paused: dict[str, int] = dict(await self._fetch("SELECT queue, paused FROM queues"))
        counts = {q: n for q, *n in await self._fetch(_COUNTS_PER_QUEUE)}
        none = [0] * (len(_QUEUE_COUNTS) + len(_PENDING_BANDS))
        return [_queue_info(queue, bool(paused.get(queue, False)), counts.get(queue, none))
                for queue in sorted(paused.keys() | counts.keys())]

    async def runs_of(self, job_id: str) -> list[RunSummary]:
        rows = await self._fetch(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE job_id = ? ORDER BY attempt", (job_id,)
        )
        return [_run_summary(r) for r in rows]

    async def runs(
        self, *, task_type: str | None = None, status: RunStatus | None = None,
        limit: int = 100,
    ) -> list[RunSummary]:
        """Newest first (by start time)."""
        where, args = [], []
        for column, value in (("task_type", task_type), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = (
            f"SELECT {_RUN_COLUMNS} FROM runs"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY started_at DESC, run_id DESC LIMIT ?"
        )
        return [_run_summary(r) for r in await self._fetch(sql, (*args, limit))]

    async def run(self, run_id: str) -> RunDetail | None:
        rows = await self._fetch(
            f"SELECT {_RUN_COLUMNS}, stack FROM runs WHERE run_id = ?", (run_id,)
        )
        if not rows:
            return None
        logs = await self._fetch(
            "SELECT log_id, level, message, details, created_at FROM run_logs WHERE run_id = ?"
            " ORDER BY partition, offset", (run_id,)
        )
        summary = _run_summary(rows[0])
        return RunDetail(
            **msgspec.structs.asdict(summary), stack=rows[0][12],
            logs=[RunLog(id=i, level=lv, message=m, details=msgspec.Raw(d),
                         created_at=iso_ms(t) or "") for i, lv, m, d, t in logs],
        )

    async def changed_since(
        self, partition: int, offset: int, filters: Any, limit: int
    ) -> list[tuple[TaskView, int]]:
        """Tasks of the partition whose latest change is at or after offset, in log order,
        with that change's offset. filters: task_types / statuses / queues lists (or None)."""
        where, args = ["partition = ?", "last_offset >= ?"], [partition, offset]
        if filters is not None:
            for column, values in (("task_type", filters.task_types),
                                   ("status", filters.statuses), ("queue", filters.queues)):
                if values is not None and not values:
                    return []  # an empty filter matches nothing
                if values is not None:
                    where.append(f"{column} IN ({','.join('?' * len(values))})")
                    args.extend(values)
        rows = await self._fetch(
            "SELECT job_id, task_type, queue, status, updated_at, retry_count, processed, total,"
            f" failed, priority, created_at, last_offset FROM jobs WHERE {' AND '.join(where)}"
            " ORDER BY last_offset LIMIT ?", (*args, limit),
        )
        return [
            (TaskView(r[0], r[1], r[2], _JOB_STATUS[r[3]], iso_ms(r[4]) or "", r[5],
                      Progress(r[6], r[7], r[8]), r[9], iso_ms(r[10]) or ""), r[11])
            for r in rows
        ]

    async def event_positions(self, job_id: str) -> list[tuple[int, int]]:
        """Where the job's events sit in the jobs topic, in log order."""
        rows = await self._fetch(
            "SELECT partition, offset FROM job_events WHERE job_id = ? ORDER BY offset", (job_id,)
        )
        return [(p, o) for p, o in rows]

    async def event_position(self, event_id: str) -> tuple[int, int] | None:
        """Where the job event of this id sits in the jobs topic; None if no job event has it."""
        rows = await self._fetch(
            "SELECT partition, offset FROM job_event_ids WHERE event_id = ?", (event_id,))
        return (rows[0][0], rows[0][1]) if rows else None

    async def quarantined(self) -> int:
        rows = await self._fetch("SELECT COUNT(*) FROM quarantine")
        return int(rows[0][0])

    # -- schedules ------------------------------------------------------------------------

    async def schedules(self, schedule_id: str | None = None) -> list[ScheduleView]:
        """Schedules that are not removed (one, with an id), by id, with the status of the
        last job each started and whether any job of theirs is still unfinished."""
        where = " AND schedule_id = ?" if schedule_id is not None else ""
        rows = await self._fetch(
            f"SELECT * FROM schedules WHERE status != '{ScheduleStatus.REMOVED}'{where}"
            " ORDER BY schedule_id",
            (schedule_id,) if schedule_id is not None else (),
        )
        states = [(schedule_from_row(r), r[8]) for r in rows]
        last = await self.job_statuses([s.last_job_id for s, _ in states if s.last_job_id])
        running = await self.unfinished_schedule_jobs()
        return [
            schedule_view(s, next_run, last.get(s.last_job_id or ""), s.schedule_id in running)
            for s, next_run in states
        ]

    # -- API keys ---------------------------------------------------------------------------

    async def keys(self) -> list[KeyState]:
        """Every API key, revoked ones too, oldest first."""
        rows = await self._fetch("SELECT * FROM api_keys ORDER BY created_at, key_id")
        return [key_from_row(r) for r in rows]

    async def key(self, key_id: str) -> KeyState | None:
        rows = await self._fetch("SELECT * FROM api_keys WHERE key_id = ?", (key_id,))
        return key_from_row(rows[0]) if rows else None

    # -- users ------------------------------------------------------------------------------

    async def users(self) -> list[UserState]:
        """Every username's current or last registration, removed ones too, oldest first."""
        rows = await self._fetch("SELECT * FROM users ORDER BY created_at, username")
        return [user_from_row(r) for r in rows]

    async def user(self, username: str) -> UserState | None:
        rows = await self._fetch("SELECT * FROM users WHERE username = ?", (username,))
        return user_from_row(rows[0]) if rows else None

    async def checkpoints(self, model: str) -> dict[int, int]:
        """The model's next offset per partition: every record before it is applied."""
        rows = await self._fetch(
            "SELECT partition, next_offset FROM checkpoints WHERE model = ?", (model,))
        return {p: o for p, o in rows}

    async def schedule_state(self, schedule_id: str) -> ScheduleState | None:
        """The schedule's state, removed or not; None if it was never defined."""
        rows = await self._fetch(
            "SELECT * FROM schedules WHERE schedule_id = ?", (schedule_id,))
        return schedule_from_row(rows[0]) if rows else None

    async def job_statuses(self, job_ids: Collection[str]) -> dict[str, JobStatus]:
        """The status of each of these jobs that the read model has."""
        ids = list(job_ids)
        out: dict[str, JobStatus] = {}
        for i in range(0, len(ids), IN_CHUNK):
            chunk = ids[i : i + IN_CHUNK]
            out.update((job_id, _JOB_STATUS[status]) for job_id, status in
                       await self._fetch(
                f"SELECT job_id, status FROM jobs WHERE job_id IN ({','.join('?' * len(chunk))})",
                chunk,
            ))
        return out

    async def unfinished_schedule_jobs(self) -> dict[str, set[str]]:
        """Schedule id -> its jobs that are scheduled, pending or in progress (a schedule's
        jobs carry its id in their idempotency key)."""
        rows = await self._fetch(
            f"SELECT job_id, idempotency_key FROM jobs WHERE status IN ({_UNFINISHED})"
            " AND idempotency_key LIKE 'schedule:%'"
        )
        out: dict[str, set[str]] = {}
        for job_id, key in rows:
            schedule_id = schedule_of_key(key)
            if schedule_id is not None:
                out.setdefault(schedule_id, set()).add(job_id)
        return out



def _queue_info(queue: str, paused: bool, counts: list[int]) -> QueueInfo:
    """A queue from its row of _COUNTS_PER_QUEUE: the counts by status, then by band."""
    pending, scheduled, in_progress, high, normal, low = counts
    return QueueInfo(queue, paused, pending, scheduled, in_progress,
                     QueueDepth(high=high, normal=normal, low=low))
