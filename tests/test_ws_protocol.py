"""WS /ws against a real `jobledger serve` process, so that uvicorn's own WebSocket protocol
reads the frames (api/ws_protocol.py): a message over the cap is closed with 1009 from its
header, a binary one with 1003, text that is not UTF-8 with 1007; none of them logs a
traceback, and frames of megabytes leave the server's memory where it was."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Close, CloseCode
from websockets.http11 import Response
from websockets.uri import parse_uri

from jobledger.schemas.api import WS_MAX_MESSAGE_BYTES
from tests.support.procs import ServerProcess

SECONDS = 10.0  # real time; only reached when something is broken


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("wsproto") / "j.db", "--no-workers")
    try:
        process.wait_healthy()
        yield process
    finally:
        process.stop()


def ws_url(server: ServerProcess) -> str:
    return server.url.replace("http://", "ws://") + "/ws"


class Conn:
    """websockets' sans-I/O client on a socket, so that a test can send what a well-behaved
    client never would (text that is not UTF-8), and see the close frame the server sends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 protocol: ClientProtocol):
        self.reader, self.writer, self.protocol = reader, writer, protocol
        self.eof = False

    @classmethod
    async def open(cls, url: str) -> Conn:
        uri = parse_uri(url)
        reader, writer = await asyncio.open_connection(uri.host, uri.port)
        conn = cls(reader, writer, ClientProtocol(uri, max_size=None))
        conn.protocol.send_request(conn.protocol.connect())
        await conn.flush()
        while not any(isinstance(e, Response) for e in await conn.receive()):
            pass
        return conn

    async def flush(self, limit: int | None = None) -> None:
        """Write what the protocol has to send (its first `limit` bytes only, if given); a
        server that has closed is no error here: what it said before is read by `closed`."""
        self.writer.write(b"".join(self.protocol.data_to_send())[:limit])
        try:
            await self.writer.drain()
        except ConnectionError:
            pass

    async def receive(self) -> list[object]:
        try:
            data = await asyncio.wait_for(self.reader.read(65536), SECONDS)
        except ConnectionError:
            data = b""
        if data:
            self.protocol.receive_data(data)
        elif not self.eof:
            self.eof = True
            self.protocol.receive_eof()
        return list(self.protocol.events_received())

    async def closed(self) -> Close | None:
        """Read until the server ends the connection: the close frame it sent, or None."""
        while not self.protocol.close_rcvd and not self.eof:
            await self.receive()
        self.writer.close()
        return self.protocol.close_rcvd

    async def answer(self) -> bytes:
        """The server's next message (the socket stays open)."""
        while True:
            for event in await self.receive():
                return bytes(event.data)  # type: ignore[attr-defined]


async def close_after(url: str, send: Callable[[ClientProtocol], None],
                      limit: int | None = None) -> Close:
    """The close frame the server answers with to what `send` queues (of which only the
    first `limit` bytes are written, if given)."""
    conn = await Conn.open(url)
    send(conn.protocol)
    await conn.flush(limit)
    close = await conn.closed()
    assert close is not None, "closed without a close frame"
    return close


async def answer_to(url: str, send: Callable[[ClientProtocol], None]) -> bytes:
    """The server's answer to what `send` queues; the connection is open until then."""
    conn = await Conn.open(url)
    send(conn.protocol)
    await conn.flush()
    answer = await conn.answer()
    conn.writer.close()
    return answer


def spaces(size: int) -> Callable[[ClientProtocol], None]:
    return lambda protocol: protocol.send_text(b" " * size)  # not JSON: INVALID_MESSAGE


def no_traceback(server: ServerProcess) -> bool:
    log = server.output()
    return "Traceback" not in log and "Exception" not in log


async def test_a_message_over_the_cap_is_closed_with_1009_one_at_the_cap_is_read(
    server: ServerProcess,
) -> None:
    assert b"INVALID_MESSAGE" in await answer_to(ws_url(server), spaces(WS_MAX_MESSAGE_BYTES))
    # The header and a little of the payload: it is refused from the header.
    close = await close_after(ws_url(server), spaces(WS_MAX_MESSAGE_BYTES + 1), limit=100)
    assert close.code == CloseCode.MESSAGE_TOO_BIG  # 1009
    assert no_traceback(server)


async def test_frames_of_megabytes_leave_the_servers_memory_where_it_was(
    server: ServerProcess,
) -> None:
    """The issue's 20 clients sending 15 MB took the RSS from 158 to 566 MB, for good: the
    frames are now refused from their header, before their payload is read. (Their close
    frames are not checked: the server closes with megabytes unread, so TCP resets the
    connection, and a reset drops what the client had not read yet.)"""
    before = rss_mb(server)

    async def send_15_mb() -> None:
        conn = await Conn.open(ws_url(server))
        spaces(15 * 1024 * 1024)(conn.protocol)
        await conn.flush()
        while not await conn.receive() and not conn.eof:  # closed, or (read whole) answered
            pass
        conn.writer.close()

    await asyncio.gather(*(send_15_mb() for _ in range(20)))
    assert rss_mb(server) - before < 30
    assert server.http.get("/health").status_code == 200


def rss_mb(server: ServerProcess) -> float:
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    [line] = [line for line in status.splitlines() if line.startswith("VmRSS:")]
    return int(line.split()[1]) / 1024


async def test_a_binary_message_is_closed_with_1003_and_no_traceback(
    server: ServerProcess,
) -> None:
    close = await close_after(ws_url(server), lambda p: p.send_binary(b'{"type": "ping"}'))
    assert close.code == CloseCode.UNSUPPORTED_DATA  # 1003
    assert close.reason == "binary messages are not accepted: send JSON text"
    assert no_traceback(server)


async def test_text_that_is_not_utf8_is_closed_with_1007_and_no_traceback(
    server: ServerProcess,
) -> None:
    close = await close_after(ws_url(server), lambda p: p.send_text(b'{"type": "\xff\xfe"}'))
    assert close.code == CloseCode.INVALID_DATA  # 1007
    assert no_traceback(server) and "UTF-8" not in server.output()

    def split(protocol: ClientProtocol) -> None:  # a character straddles the two frames
        protocol.send_text('{"type": "ping", "channel": "é'.encode()[:-1], fin=False)
        protocol.send_continuation('é"}'.encode()[1:], fin=True)

    assert await answer_to(ws_url(server), split) == b'{"type":"pong"}'  # judged whole


def test_the_cap_is_the_flag(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "j.db", "--no-workers", "--ws-max-message-bytes", "2048")
    try:
        server.wait_healthy()
        assert b"INVALID_MESSAGE" in asyncio.run(answer_to(ws_url(server), spaces(2048)))
        close = asyncio.run(close_after(ws_url(server), spaces(2049), limit=100))
        assert close.code == CloseCode.MESSAGE_TOO_BIG
    finally:
        server.stop()
