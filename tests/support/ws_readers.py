"""WebSocket subscribers in a process of their own, which read everything and look at
nothing: `python -m tests.support.ws_readers ws://127.0.0.1:PORT/ws COUNT` subscribes COUNT
connections to every task, prints "ready" once each has its answer, then reads and discards
until it is killed or every connection is closed. A test's server then fans out to clients
that keep up, without their work sharing its event loop."""

from __future__ import annotations

import base64
import os
import selectors
import socket
import sys
from urllib.parse import urlsplit

SUBSCRIBE = b'{"type": "subscribe"}'


def connect(host: str, port: int, path: str) -> socket.socket:
    """A connection past its handshake, its subscribe sent, its answer read."""
    sock = socket.create_connection((host, port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    read_until(sock, b"\r\n\r\n")  # the 101: what a client sends before it may be lost
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(SUBSCRIBE))
    sock.sendall(bytes([0x81, 0x80 | len(SUBSCRIBE)]) + mask + masked)
    read_until(sock, b"subscribed")
    sock.setblocking(False)
    return sock


def read_until(sock: socket.socket, marker: bytes) -> None:
    got = b""
    while marker not in got:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed before {marker!r}")
        got += chunk


def main(url: str, count: int) -> None:
    where = urlsplit(url)
    assert where.hostname is not None and where.port is not None
    selector = selectors.DefaultSelector()
    for _ in range(count):
        selector.register(connect(where.hostname, where.port, where.path), selectors.EVENT_READ)
    print("ready", flush=True)
    while selector.get_map():
        for key, _ in selector.select():
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            try:
                data = sock.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                selector.unregister(sock)
                sock.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
