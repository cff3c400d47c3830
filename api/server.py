"""uvicorn's server, running the app's lifespan itself (api/app.py:run_server says why)."""

from __future__ import annotations

import contextlib
import socket
import sys

import uvicorn
from starlette.applications import Starlette


class Server(uvicorn.Server):
    """Starts the app's lifespan (the node), then listens, then prints the banner; stops the
    lifespan after uvicorn's own shutdown. uvicorn's config has lifespan="off", so a failed
    start is raised from run() as itself instead of logged as a traceback."""

    def __init__(self, config: uvicorn.Config, web: Starlette, banner: str):
        super().__init__(config)
        self.web, self.banner = web, banner
        self.lifespan_stack = contextlib.AsyncExitStack()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await self.lifespan_stack.enter_async_context(self.web.router.lifespan_context(self.web))
        try:
            await super().startup(sockets=sockets)
        except BaseException:
            await self.lifespan_stack.aclose()
            raise
        # The lines auth adds (api/app.py:serving): the file of a first admin key, say.
        print(self.banner, *self.web.state.security.notes, sep="\n", file=sys.stderr,
              flush=True)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().shutdown(sockets=sockets)
        finally:
            await self.lifespan_stack.aclose()
