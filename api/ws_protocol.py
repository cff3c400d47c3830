"""uvicorn's WebSocket protocol as `jobledger serve` and `jobledger api` run it.

Two changes to uvicorn's websockets (sans-I/O) protocol:

1. A text message that is not UTF-8 closes the connection with 1007 and logs nothing.
   uvicorn closes with 1007 too, but logs the UnicodeDecodeError's traceback first: a line
   per hostile message, at ERROR, for the client's mistake.
2. The `jobledger.websocket.send_frames` ASGI extension: the app may send
   `{"type": "jobledger.websocket.send_frames", "frames": bytes}`, a run of complete text
   frames (unmasked, uncompressed, as a server sends them), written to the socket as they
   are, in one write. The hub frames each update once for every subscriber and writes a
   client's pending updates together (api/ws.py); through plain ASGI each message is
   framed again for each client and written on its own. It is offered only when no
   extension (permessage-deflate) was negotiated, where a frame is the same bytes for
   every connection.

Incoming messages are capped by uvicorn's `ws_max_size` (api/app.py:uvicorn_config sets it
from HubConfig.max_message_bytes): a frame announcing more is refused with 1009 from its
header, before its payload is read.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State

SEND_FRAMES = "jobledger.websocket.send_frames"


def text_frame(payload: bytes) -> bytes:
    """The frame a server sends for one text message with this UTF-8 payload."""
    return Frame(Opcode.TEXT, payload).serialize(mask=False)


class WebSocketProtocol(WebSocketsSansIOProtocol):
    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The app's task is created but has not run yet: it sees the extension.
        if self.handshake_initiated and not self.close_sent and not self.conn.extensions:
            self.scope["extensions"][SEND_FRAMES] = {}

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent and not _utf8(self.frames):
            self.frames = []
            self.conn.fail(CloseCode.INVALID_DATA, "a text message must be UTF-8")
            self.handle_parser_exception()
            return
        super().send_receive_event_to_app()

    async def send(self, message: Any) -> None:
        if message["type"] != SEND_FRAMES:
            await super().send(message)
            return
        await self.writable.wait()  # flow control: the transport's buffer is below its mark
        if self.close_sent:
            raise RuntimeError(f"Unexpected ASGI message '{SEND_FRAMES}' after sending "
                               "'websocket.close'.")
        if self.disconnected or self.conn.state is not State.OPEN:
            raise ClientDisconnected()
        self.transport.write(message["frames"])


def _utf8(frames: list[bytes]) -> bool:
    try:
        b"".join(frames).decode()
    except UnicodeDecodeError:
        return False
    return True
