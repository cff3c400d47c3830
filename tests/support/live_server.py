"""A real uvicorn server on a loopback port, in the test's own event loop, in front of a
node the test started (so the test keeps its ManualClock)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn

from jobledger.api.app import create_app, serving, uvicorn_config
from jobledger.api.ws import HubConfig
from jobledger.services.node.embedded import EmbeddedNode
from jobledger.services.security.bootstrap import SecuritySettings

STARTUP_SECONDS = 5.0


@asynccontextmanager
async def live_server(node: EmbeddedNode, hub: HubConfig | None = None,
                      security: SecuritySettings | None = None) -> AsyncIterator[str]:
    """Serve the node's API (auth as `security` says, off by default); yields the base URL
    (http://127.0.0.1:PORT)."""
    app = create_app(lambda: node, hub, security, telemetry=node.config.telemetry)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(app, ws_ping_interval=None))
    async with serving(app, node, hub):
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            async with asyncio.timeout(STARTUP_SECONDS):
                while not server.started:
                    await asyncio.sleep(0.005)  # uvicorn has no startup event to await
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, STARTUP_SECONDS)
            sock.close()
