"""Password hashes: argon2id through argon2-cffi, the reference implementation's binding.

The parameters are argon2-cffi's defaults, RFC 9106's second recommended profile (3 passes
over 64 MiB, 4 lanes): about 0.1 s of one core a hash here. Hashing runs in a worker
thread (argon2-cffi releases the GIL), at most MAX_CONCURRENT at once, so logins neither
stall the event loop nor take more than MAX_CONCURRENT x 64 MiB of memory together.

A login for a username that does not exist is checked against a hash of its own all the
same, so the answer takes as long as for a wrong password: its timing does not tell
which usernames exist.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MAX_CONCURRENT = 4  # hashes computed at once, on one node


class Passwords:
    """Hashing and checking, bounded to MAX_CONCURRENT at once (one per node)."""

    def __init__(self, hasher: PasswordHasher | None = None):
        self.hasher = hasher or PasswordHasher()  # argon2id
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)
        self._stand_in: str | None = None

    async def hash(self, password: str) -> str:
        """The argon2id PHC string of password (its own random salt, its parameters)."""
        async with self._slots:
            return await asyncio.to_thread(self.hasher.hash, password)

    async def check(self, password_hash: str | None, password: str) -> bool:
        """Does password match the hash? With no hash (no such user), a check against a
        stand-in takes the same time and says no."""
        async with self._slots:
            return await asyncio.to_thread(self._check, password_hash, password)

    def _check(self, password_hash: str | None, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash or self._stand_in_hash(), password) and (
                password_hash is not None)
        except (VerificationError, InvalidHashError):
            return False

    def _stand_in_hash(self) -> str:
        if self._stand_in is None:
            self._stand_in = self.hasher.hash("no such user: a stand-in to spend the same time")
        return self._stand_in
