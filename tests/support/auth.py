"""Auth in tests: an admin key of the tests' own (JOBLEDGER_ADMIN_KEY), a token signing
secret (JOBLEDGER_JWT_SECRET, shared by the API nodes of one test), settings with auth on,
keys and users made through the API, an argon2id hasher cheap enough for tests, and a
WebSocket's first answer or refusal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import websockets
from argon2 import PasswordHasher
from websockets.frames import Close

from jobledger.services.security.bootstrap import SecuritySettings
from jobledger.services.security.passwords import Passwords

ADMIN_KEY = "tests-admin-key-0123456789abcdefghij"  # as JOBLEDGER_ADMIN_KEY would give it
JWT_SECRET = "tests-jwt-secret-0123456789abcdefghijklmnop"  # as JOBLEDGER_JWT_SECRET would
PASSWORD = "correct horse battery staple"  # long enough (15 characters at least)


def auth_on(data_dir: Path, admin_key: str | None = ADMIN_KEY, **settings: Any
            ) -> SecuritySettings:
    settings.setdefault("jwt_secret", JWT_SECRET)
    return SecuritySettings(enabled=True, admin_key=admin_key, data_dir=data_dir, **settings)


def fast_passwords() -> Passwords:
    """argon2id at its cheapest (1 pass over 8 KiB): the same code paths, in a millisecond
    rather than 0.1 s a hash. Only the test of the parameters uses the real ones."""
    return Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def make_key(client: httpx.AsyncClient, *permissions: str, name: str = "test",
                   admin_key: str = ADMIN_KEY, **fields: object) -> str:
    """A new key with these permissions, made by the admin key; the key itself."""
    body = {"name": name, "permissions": list(permissions), **fields}
    response = await client.post("/api/v1/keys", json=body, headers=bearer(admin_key))
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


async def make_user(client: httpx.AsyncClient, username: str, *permissions: str,
                    password: str = PASSWORD, admin_key: str = ADMIN_KEY) -> str:
    """Register a user with these permissions (by the admin key) and sign in: its token."""
    body = {"username": username, "password": password, "permissions": list(permissions)}
    made = await client.post("/auth/register", json=body, headers=bearer(admin_key))
    assert made.status_code == 201, made.text
    return await login(client, username, password)


async def login(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> str:
    response = await client.post("/auth/login", json={"username": username,
                                                      "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


async def ws_ping(url: str, headers: dict[str, str]) -> tuple[str | None, Close | None]:
    """Connect to a WebSocket and ping: the answer, or the close frame the server sent
    instead."""
    try:
        async with websockets.connect(url, additional_headers=headers, open_timeout=5) as ws:
            await ws.send('{"type": "ping"}')
            return str(await ws.recv(decode=True)), None
    except websockets.ConnectionClosed as exc:
        return None, exc.rcvd
