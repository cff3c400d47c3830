"""What auth costs the busiest route: `POST /api/v1/tasks` against two `jobledger serve
--no-workers`, one with `--auth on` (the key checked and its rate limit spent on every
request: a limit too high to refuse any) and one with auth off, in one run, rounds
alternated A B A B so that the machine's drift falls on both alike.

    python -m bench.auth_overhead [ROUNDS] [REQUESTS]

Each round sends REQUESTS tasks over CONNECTIONS keep-alive connections, each one request
at a time, as plain HTTP/1.1 on a raw socket (a Python HTTP client's own time would hide
the server's: bench/client_overhead.py). Both servers get the same bytes, the
Authorization header included. Printed: each round's tasks a second and the server's CPU
time a task (the steadier figure on a loaded machine: another process's load lengthens the
wall time of a round, not the CPU the server spends), and the medians of the pairwise
ratios on/off. Recorded in docs/performance.md ("Figures behind the code")."""

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
from .ledger import EmbeddedMode, Server

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


async def _round(server: Server, requests: int) -> tuple[float, float]:
    """Tasks a second over CONNECTIONS connections, and the server's CPU µs a task."""
    (service,) = server.services
    cpu, start = service.cpu_seconds(), time.perf_counter()
    share = requests // CONNECTIONS
    await asyncio.gather(*(_connection(server.url, share) for _ in range(CONNECTIONS)))
    sent = share * CONNECTIONS
    return sent / (time.perf_counter() - start), (service.cpu_seconds() - cpu) / sent * 1e6


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
            for server in (on, off):  # warm-up, not counted
                await _round(server, requests)
            rates, cpus = [], []
            for n in range(rounds):
                (rate_on, cpu_on), (rate_off, cpu_off) = (await _round(on, requests),
                                                          await _round(off, requests))
                rates.append(rate_on / rate_off)
                cpus.append(cpu_on / cpu_off)
                print(f"round {n + 1}: on {rate_on:,.0f}/s {cpu_on:,.0f} µs, off "
                      f"{rate_off:,.0f}/s {cpu_off:,.0f} µs", flush=True)
            print(f"median on/off over {rounds} rounds: throughput {statistics.median(rates):.3f}"
                  f", server CPU a task {statistics.median(cpus):.3f} (load average "
                  f"{os.getloadavg()[0]:.2f})")

def check_us(calls: int = 200_000) -> dict[str, float]:
    """In this process, µs a call: the auth check of a request (api/auth.py:authorize: the
    key's digest and lookup, its rate limit), and the cross-site and body checks every
    request gets, auth on or off (api/guard.py). A machine's load stretches these less than
    a round trip through a server."""
    from types import SimpleNamespace

    from jobledger.api.auth import authorize
    from jobledger.api.guard import RequestRules
    from jobledger.projections.keys import KeyState
    from jobledger.schemas import Actor, ActorKind, Permission
    from jobledger.services.security.bootstrap import SecuritySettings
    from jobledger.services.security.exposure import ExposureSettings
    from jobledger.services.security.keys import digest_of
    from jobledger.services.security.setup import Security

    security = Security(SecuritySettings(enabled=True, rate_limit=1e9, rate_burst=10**9))
    security.index.put([KeyState("k", "bench", "jl_bench", digest_of(ADMIN_KEY),
                                 (Permission.ADMIN,), 0, Actor(ActorKind.CLIENT, "bench"))])
    netloc = "127.0.0.1:8080"
    head = _request(netloc).split(b"\r\n\r\n")[0].split(b"\r\n")[1:]
    headers = [(n.lower(), v) for n, v in (line.split(b": ", 1) for line in head)]
    scope = {"type": "http", "method": "POST", "headers": headers,
             "app": SimpleNamespace(state=SimpleNamespace(security=security))}
    rules = RequestRules(None, ExposureSettings())  # type: ignore[arg-type]  # not called
    out = {}
    for name, check in (("auth", lambda: authorize(scope, Permission.SUBMIT_TASKS)),
                        ("guard", lambda: rules.refusal(scope))):
        start = time.process_time()  # CPU: another process's load stretches it less
        for _ in range(calls):
            check()
        out[name] = (time.process_time() - start) / calls * 1e6
    return out


if __name__ == "__main__":
    print(", ".join(f"{k} check {v:.2f} µs" for k, v in check_us().items()), flush=True)
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 6,
                     int(sys.argv[2]) if len(sys.argv) > 2 else 2000))
