"""Auth in tests: an admin key of the tests' own (JOBLEDGER_ADMIN_KEY), settings with auth
on, keys made through the API, and a WebSocket's first answer or refusal."""

from __future__ import annotations

from pathlib import Path

import httpx
import websockets
from websockets.frames import Close

from jobledger.services.security.bootstrap import SecuritySettings

ADMIN_KEY = "tests-admin-key-0123456789abcdefghij"  # as JOBLEDGER_ADMIN_KEY would give it


def auth_on(data_dir: Path, admin_key: str | None = ADMIN_KEY) -> SecuritySettings:
    return SecuritySettings(enabled=True, admin_key=admin_key, data_dir=data_dir)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def make_key(client: httpx.AsyncClient, *permissions: str, name: str = "test",
                   admin_key: str = ADMIN_KEY, **fields: object) -> str:
    """A new key with these permissions, made by the admin key; the key itself."""
    body = {"name": name, "permissions": list(permissions), **fields}
    response = await client.post("/api/v1/keys", json=body, headers=bearer(admin_key))
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


async def ws_ping(url: str, headers: dict[str, str]) -> tuple[str | None, Close | None]:
    """Connect to a WebSocket and ping: the answer, or the close frame the server sent
    instead."""
    try:
        async with websockets.connect(url, additional_headers=headers, open_timeout=5) as ws:
            await ws.send('{"type": "ping"}')
            return str(await ws.recv(decode=True)), None
    except websockets.ConnectionClosed as exc:
        return None, exc.rcvd
