"""API key material: new keys, their digests and display prefixes. The only place a key's
secret exists on the server is the request that carries it; what is kept is its digest."""

from __future__ import annotations

import hashlib
import secrets

from jobledger.schemas.security import KEY_PREFIX

KEY_BYTES = 32  # 256 random bits: nothing to gain from guessing, so a fast digest suffices
PREFIX_CHARS = len(KEY_PREFIX) + 8  # shown to people: jl_ and 8 of the random characters
MIN_CHOSEN_KEY = 24  # characters of a key an operator chooses (JOBLEDGER_ADMIN_KEY)


def new_key() -> str:
    """A fresh key: jl_ and 43 URL-safe characters (32 bytes from the OS's CSPRNG)."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def digest_of(key: str) -> str:
    """The hex SHA-256 of a key, which is all the log and the read models keep. A slow
    password hash would add nothing: a key has 256 random bits, not a person's choice."""
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    """What lists show of a key: jl_ and its first 8 random characters (48 of its 256
    bits); of a chosen key, its first 4 characters."""
    return key[:PREFIX_CHARS] if key.startswith(KEY_PREFIX) else key[:4]
