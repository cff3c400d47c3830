"""WebSocket fan-out: 1,000 subscribers on one `jobledger serve` (no workers, so each job
makes exactly one task_update: its enqueue), p50/p99 from the enqueue to each subscriber's
receipt of that job's update, over every (subscriber, job) pair.

Two clocks start each job:
- the headline figure starts when the POST that appends the job is sent: it includes the
  HTTP request and its validation, so it is an upper bound of append-to-client;
- `append_p50_ms` / `append_p99_ms` in the details start at the event's own time (the
  envelope's `time`, which the task update carries as `updated_at`, taken by the server
  just before the append): append, fsync, projection, fan-out, client. It is wall-clock
  time in milliseconds, truncated, so it can read up to 1 ms high.

The subscribers run in two child processes and time arrivals with the same clocks. Each
connection is a bare asyncio protocol over websockets' sans-I/O `ClientProtocol` (it
offers permessage-deflate as a browser does, and inflates if the server accepts): no task
per connection and no JSON parsing, so the clients' own CPU, which shares the machine's two
cores with the server, stays small. Server and client CPU time per message are reported.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import uvloop
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from bench.env import Env
from bench.ledger import JobledgerSystem
from bench.measure import latency_ms, percentile, steady

JOBS_PER_S = 5  # each job is SUBSCRIBERS messages: the load is on the fan-out, not the log
CONNECT_IN_FLIGHT = 50  # handshakes at once while the subscribers connect
CLIENT_PROCESSES = 2  # the subscribers' own CPU is spread over processes, as real ones are
_TASK_ID = re.compile(rb'"task_id":"([^"]+)"')
_UPDATED_AT = re.compile(rb'"updated_at":"([^"]+)"')


async def ws_fanout(system: JobledgerSystem, env: Env) -> dict[str, Any]:
    subscribers = env.sizes.ws_subscribers
    jobs = int(JOBS_PER_S * env.sizes.lag_seconds * 2)
    sent: dict[str, float] = {}
    async with system.mode.serve(env, env.scratch(f"ws-{system.key}"), workers=False) as server:
        url = server.url.replace("http://", "ws://") + "/ws"
        procs, results = await start_subscribers(_subscriber_process, url, subscribers, jobs)
        server_cpu = sum(s.cpu_seconds() for s in server.services)

        async def send(k: int) -> None:
            start = time.monotonic()
            reply = await server.http.post("/api/v1/tasks", json={"task_type": "noop"})
            sent[reply.json()["task_id"]] = start

        await steady(JOBS_PER_S, jobs, send)
        gathered = await results_of(procs, results, 120)
        server_cpu = sum(s.cpu_seconds() for s in server.services) - server_cpu
    return _figures(gathered, sent, server_cpu, subscribers, jobs)


async def start_subscribers(target: Callable[..., None], url: str, subscribers: int,
                            jobs: int) -> tuple[list[Any], Any]:
    """The subscribers shared among CLIENT_PROCESSES processes, each running
    target(url, its share, jobs, ready, results); returns once every subscription is
    answered, with the processes and the queue of their results."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    counts = [subscribers // CLIENT_PROCESSES + (i < subscribers % CLIENT_PROCESSES)
              for i in range(CLIENT_PROCESSES)]
    ready = context.Barrier(CLIENT_PROCESSES + 1)
    procs = [context.Process(target=target, args=(url, n, jobs, ready, results))
             for n in counts]
    for proc in procs:
        proc.start()
    await asyncio.to_thread(ready.wait, 120)
    return procs, results


async def results_of(procs: list[Any], results: Any, timeout: float) -> list[dict[str, Any]]:
    """Each subscriber process's result, once it has put it; then the processes ended."""
    gathered = [await asyncio.to_thread(results.get, True, timeout) for _ in procs]
    for proc in procs:
        await asyncio.to_thread(proc.join, 30)
    return gathered


def _figures(gathered: list[dict[str, Any]], sent: dict[str, float], server_cpu: float,
             subscribers: int, jobs: int) -> dict[str, Any]:
    """Latencies over every (subscriber, job) pair; the event's time is converted to the
    monotonic clock with the offset between the two clocks now (one for every process)."""
    wall_minus_mono = time.time() - time.monotonic()
    event_at = {job: _epoch_s(stamp) - wall_minus_mono
                for got in gathered for job, stamp in got["updated_at"].items()}
    from_post, from_append, spreads = [], [], []
    for job in sent:
        arrivals = [arrivals[job] for got in gathered for arrivals in got["arrivals"]
                    if job in arrivals]
        if not arrivals:
            continue
        from_post.extend(at - sent[job] for at in arrivals)
        from_append.extend(at - event_at[job] for at in arrivals)
        spreads.append(max(arrivals) - min(arrivals))
    messages = len(from_post)
    client_cpu = sum(got["cpu"] for got in gathered)
    append = latency_ms(from_append)
    return {**latency_ms(from_post), "details": {
        "subscribers": subscribers, "jobs": jobs, "messages": messages,
        "append_p50_ms": round(append["p50_ms"], 2), "append_p99_ms": round(append["p99_ms"], 2),
        "first_to_last_receipt_of_a_job_p50_ms": round(percentile(spreads, 50) * 1000, 2),
        "first_to_last_receipt_of_a_job_max_ms": round(max(spreads, default=0) * 1000, 2),
        "compression": sorted({got["compression"] for got in gathered}),
        "client_processes": CLIENT_PROCESSES,
        "client_cpu_seconds": round(client_cpu, 2),
        "server_cpu_seconds": round(server_cpu, 2),
        "server_cpu_us_per_message": round(server_cpu / max(messages, 1) * 1e6, 1),
        "client_cpu_us_per_message": round(client_cpu / max(messages, 1) * 1e6, 1)}}


def _epoch_s(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# -- the subscriber processes ------------------------------------------------------------------


def _subscriber_process(url: str, count: int, jobs: int, ready: Any, results: Any) -> None:
    # uvloop, as the server: asyncio's own loop costs more per readable socket than the rest
    # of a subscriber's work on a message.
    results.put(uvloop.run(_subscribe(url, count, jobs, ready)))


async def _subscribe(url: str, count: int, jobs: int, ready: Any) -> dict[str, Any]:
    seen: dict[str, str] = {}  # job id -> updated_at, read from its first update only
    subs = await connect_subscribers(url, count, lambda uri: _Subscriber(uri, jobs, seen))
    await asyncio.to_thread(ready.wait, 120)
    cpu = time.process_time()
    await asyncio.wait_for(asyncio.gather(*(s.done for s in subs)), 120)
    cpu = time.process_time() - cpu
    for sub in subs:
        sub.transport.close()
    compression = "permessage-deflate" if any(s.compressed for s in subs) else "none"
    return {"arrivals": [s.arrivals for s in subs], "updated_at": seen, "cpu": cpu,
            "compression": compression}


S = TypeVar("S", bound="_Subscriber")


async def connect_subscribers(url: str, count: int, make: Callable[[Any], S]) -> list[S]:
    """`count` connections made by make(uri), CONNECT_IN_FLIGHT handshakes at a time;
    returns once each has its subscription answered."""
    loop = asyncio.get_running_loop()
    uri = parse_uri(url)
    gate = asyncio.Semaphore(CONNECT_IN_FLIGHT)

    async def connect() -> S:
        async with gate:
            _, sub = await loop.create_connection(lambda: make(uri), uri.host, uri.port)
            await asyncio.wait_for(sub.subscribed, 60)
            return sub

    return await asyncio.gather(*(connect() for _ in range(count)))


class _Subscriber(asyncio.Protocol):
    """One connection: subscribes to every task, then times each task_update's arrival.

    websockets' sans-I/O protocol does the handshake (and inflates, if the server accepts
    permessage-deflate). Without compression, frames are read by `_frames`: a server's
    frames are unmasked, and one task_update is one text frame, so a few byte operations
    per message keep the clients' CPU, which competes with the server's, small."""

    def __init__(self, uri: Any, jobs: int, seen: dict[str, str]):
        self.ws = ClientProtocol(uri, extensions=enable_client_permessage_deflate(None))
        self.jobs = jobs
        self.seen = seen
        self.arrivals: dict[str, float] = {}
        loop = asyncio.get_running_loop()
        self.subscribed: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self.compressed = False
        self.raw: bytearray | None = None  # set once frames are read without websockets

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.ws.send_request(self.ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()  # one read: its messages arrived together
        if self.raw is not None:
            self.raw += data
            self._frames(now)
            return
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Response):
                self.compressed = bool(self.ws.extensions)
                self.ws.send_text(b'{"type": "subscribe"}')
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self._message(bytes(event.data), now)
        self._flush()
        if self.ws.handshake_exc is None and self.subscribed.done() and not self.compressed:
            self.raw = bytearray()  # nothing follows "subscribed" until the first update

    def _frames(self, now: float) -> None:
        buf, at = self.raw, 0
        assert buf is not None
        while len(buf) - at >= 2:
            opcode, length, head = buf[at] & 0x0F, buf[at + 1] & 0x7F, 2
            if length == 126:
                length, head = int.from_bytes(buf[at + 2:at + 4], "big"), 4
            elif length == 127:
                length, head = int.from_bytes(buf[at + 2:at + 10], "big"), 10
            if len(buf) - at < head + length:
                break
            start, at = at + head, at + head + length
            if opcode == 0x9:  # ping: a masked pong with the same payload
                payload = bytes(buf[start:at])
                self.transport.write(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
            elif opcode == 0x1:
                self._text(buf, start, at, now)
        del buf[:at]

    def _text(self, buf: bytearray, start: int, end: int, now: float) -> None:
        """A text frame's payload is buf[start:end]."""
        self._message(bytes(buf[start:end]), now)

    def _message(self, data: bytes, now: float) -> None:
        match = _TASK_ID.search(data)
        if match is None:
            if not self.subscribed.done() and b'"subscribed"' in data:
                self.subscribed.set_result(None)
            return
        job = match.group(1).decode()
        self.arrivals.setdefault(job, now)
        if job not in self.seen:
            self.seen[job] = _UPDATED_AT.search(data).group(1).decode()  # type: ignore[union-attr]
        if len(self.arrivals) >= self.jobs and not self.done.done():
            self.done.set_result(None)

    def _flush(self) -> None:
        out = self.ws.data_to_send()
        if out and not self.transport.is_closing():
            self.transport.write(b"".join(out))

    def connection_lost(self, exc: Exception | None) -> None:
        for future in (self.subscribed, self.done):
            if not future.done():
                future.set_exception(ConnectionError(f"subscriber lost its connection: {exc}"))
