"""What the hash chain costs the append path: 40,000 JobEnqueued records (386 bytes each)
appended to a fresh SQLite log, in appends of 1,000 (`bulk`), or as 8,000 single appends
from 50 concurrent callers (`concurrent`: group commit, fsync-bound). Prints the seconds.

    python -m bench.chain_append bulk|concurrent

Compare with the commit before the chain, alternated A B A B (docs/audit.md, "Cost")."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from jobledger.schemas import Actor, ActorKind, Envelope, JobEnqueued, encode
from jobledger.services.log.protocol import Entry
from jobledger.services.log.sqlite import SQLiteLogBackend

RECORDS = 40_000
SINGLE = 8_000
CALLERS = 50


def _entry(i: int) -> Entry:
    event = JobEnqueued(job_id=f"job-{i}", task_type="resize", queue="images",
                        payload=msgspec.Raw(b'{"w":640,"h":480,"src":"s3://bucket/some/key.png"}'))
    env = Envelope(id=f"0190a6b2-0000-7000-8000-{i:012d}", key=f"job-{i}",
                   time=datetime.now(UTC), actor=Actor(ActorKind.API, "bench"), event=event)
    return Entry(env.key, encode(env))


async def _run(mode: str) -> float:
    entries = [_entry(i) for i in range(RECORDS)]
    with tempfile.TemporaryDirectory() as folder:
        backend = await SQLiteLogBackend.open(Path(folder) / "log.db", {"jobs": 4})
        log = backend.topic("jobs")
        started = time.perf_counter()
        if mode == "bulk":
            for first in range(0, RECORDS, 1000):
                await log.append(entries[first:first + 1000])
        else:
            async def caller(k: int) -> None:
                for entry in entries[k:SINGLE:CALLERS]:
                    await log.append([entry])

            await asyncio.gather(*(caller(k) for k in range(CALLERS)))
        elapsed = time.perf_counter() - started
        await backend.close()
    return elapsed


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "bulk"
    print(f"{mode} {asyncio.run(_run(mode)):.3f} s")
