"""What auth costs the busiest route: `POST /api/v1/tasks` against two `jobledger serve
--no-workers`, one with `--auth on` (the key checked and its rate limit spent on every
request: a limit too high to refuse any) and one with auth off, in one run, rounds
alternated A B A B so that the machine's drift falls on both alike.

    python -m bench.auth_overhead [ROUNDS] [REQUESTS]

Each round sends REQUESTS tasks over CONNECTIONS keep-alive connections, each one request
at a time, as plain HTTP/1.1 on a raw socket (a Python HTTP client's own time would hide
the server's: bench/client_overhead.py). Both servers get the same bytes, the
Authorization header included. Printed: each round's tasks a second, and the median of
the pairwise ratios on/off. Recorded in docs/performance.md ("Figures behind the code")."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from .env import Env, Sizes
from .ledger import EmbeddedMode

ADMIN_KEY = "bench-admin-key-0123456789abcdefghijklmnop"
CONNECTIONS = 4
BODY = b'{"task_type": "noop", "payload": {"n": 1}}'


def _request(netloc: str) -> bytes:
    return (f"POST /api/v1/tasks HTTP/1.1\r\nHost: {netloc}\r\n"
            f"Authorization: Bearer {ADMIN_KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n").encode() + BODY


async def _connection(url: str, requests: int) -> None:
    where = urlsplit(url)
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    request = _request(where.netloc)
    try:
        for _ in range(requests):
            writer.write(request)
            head = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
            if not head.startswith("http/1.1 201"):
                raise RuntimeError(f"{url} answered {head.splitlines()[0]}")
            length = int(head.split("content-length:")[1].split("\r\n")[0])
            await reader.readexactly(length)
    finally:
        writer.close()


async def _round(url: str, requests: int) -> float:
    """Tasks a second over CONNECTIONS connections."""
    start = time.perf_counter()
    share = requests // CONNECTIONS
    await asyncio.gather(*(_connection(url, share) for _ in range(CONNECTIONS)))
    return share * CONNECTIONS / (time.perf_counter() - start)


async def main(rounds: int, requests: int) -> None:
    os.environ["JOBLEDGER_ADMIN_KEY"] = ADMIN_KEY
    mode = EmbeddedMode(1)
    with tempfile.TemporaryDirectory(prefix="jobledger-auth-overhead-") as tmp:
        env = Env(Sizes(), Path(tmp))
        (env.tmp / "on").mkdir()
        (env.tmp / "off").mkdir()
        async with mode._server(env, env.tmp / "on" / "j.db", "--no-workers", "--auth", "on",
                                "--rate-limit", "1000000", "--rate-burst", "1000000") as on, \
                mode._server(env, env.tmp / "off" / "j.db", "--no-workers", "--auth",
                             "off") as off:
            for url in (on.url, off.url):  # warm-up, not counted
                await _round(url, requests // 4)
            ratios = []
            for n in range(rounds):
                with_auth = await _round(on.url, requests)
                without = await _round(off.url, requests)
                ratios.append(with_auth / without)
                print(f"round {n + 1}: auth on {with_auth:,.0f}/s, auth off {without:,.0f}/s, "
                      f"on/off {with_auth / without:.3f}", flush=True)
            print(f"median on/off over {rounds} rounds: {statistics.median(ratios):.3f} "
                  f"(load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 6,
                     int(sys.argv[2]) if len(sys.argv) > 2 else 2000))
