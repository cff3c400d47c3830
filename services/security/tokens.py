"""Sign-in tokens: JWTs signed with HS256 by PyJWT, and the secret that signs them.

A token names the user's registration (`sub`: its user_id) and nothing it may do: the
permissions are looked up in the users read model on every request, so a change or a
removal takes effect at once, not when the token expires.

Checked on every request:
- the algorithm is pinned to HS256: PyJWT refuses any other, `none` included, so a token
  cannot choose how it is checked (no algorithm confusion);
- the signature, with the server's secret;
- `iss` and `aud` are jobledger's own; `exp`, `iat`, `iss`, `aud` and `sub` must be there;
- `exp` and `iat` against the node's clock, here rather than by PyJWT (which reads the
  system's time): tests drive a manual clock, as for every other deadline.

The secret comes from JOBLEDGER_JWT_SECRET, or else from `<data dir>/jwt.secret`, made
(mode 0600) on the first start that needs one. It is never written to the log: every API
node of a Kafka cluster must be given the same value (docs/security.md).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import jwt

from .bootstrap import MIN_SECRET_CHARS, read_key_file, write_key_file
from .principals import Unauthenticated

ALGORITHM = "HS256"
ISSUER = "jobledger"
AUDIENCE = "jobledger-api"
TOKEN_TYPE = "bearer"
DEFAULT_LIFETIME_S = 900  # 15 minutes: sign in again after that
SECRET_FILE = "jwt.secret"
MAX_TOKEN_CHARS = 4096  # a presented token longer than this is not one of ours
_REQUIRED = ["exp", "iat", "iss", "aud", "sub"]
# The library checks the signature, the algorithm, iss, aud and that each claim is there;
# the times are checked by the node's clock (the module's doc says why).
_OPTIONS: Any = {"require": _REQUIRED, "verify_exp": False, "verify_iat": False,
                 "verify_nbf": False}
_INVALID = "the token is not one this server issued"


class Tokens:
    """Issue and check the tokens of one node. secret: at least MIN_SECRET_CHARS bytes."""

    def __init__(self, secret: bytes, lifetime_s: int = DEFAULT_LIFETIME_S):
        self._secret = secret
        self.lifetime_s = lifetime_s

    def __repr__(self) -> str:
        return f"Tokens(lifetime_s={self.lifetime_s})"  # never the secret

    def issue(self, user_id: str, username: str, now_s: int) -> str:
        claims = {"sub": user_id, "name": username, "iat": now_s,
                  "exp": now_s + self.lifetime_s, "iss": ISSUER, "aud": AUDIENCE}
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def subject(self, token: str, now_s: float) -> str:
        """The user_id a valid token names; Unauthenticated saying what is wrong with it
        (only once the signature is good does it tell more than "not ours")."""
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthenticated(_INVALID)
        try:
            claims = jwt.decode(token, self._secret, algorithms=[ALGORITHM], audience=AUDIENCE,
                                issuer=ISSUER, options=_OPTIONS)
        except jwt.PyJWTError:
            raise Unauthenticated(_INVALID) from None
        exp, iat, sub = claims["exp"], claims["iat"], claims["sub"]
        if not (_is_time(exp) and _is_time(iat) and isinstance(sub, str)):
            raise Unauthenticated(_INVALID)
        if now_s >= exp:
            raise Unauthenticated("the token has expired: sign in again (POST /auth/login)")
        if iat > now_s + _IAT_LEEWAY_S:
            raise Unauthenticated("the token was issued in the future: check the clocks")
        return sub


_IAT_LEEWAY_S = 60  # API nodes' clocks may differ this much (one issues, another checks)


def _is_time(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def looks_like_token(credential: str) -> bool:
    """A JWT (base64url of `{"...`, three parts) rather than an API key (jl_...)."""
    return credential.startswith("eyJ") and credential.count(".") == 2


def load_secret(chosen: str | None, data_dir: Path) -> bytes:
    """The signing secret: JOBLEDGER_JWT_SECRET's value if chosen, else the one in
    `<data_dir>/jwt.secret`, made (0600) on first use; ValueError for a file too short."""
    if chosen is not None:
        return chosen.encode()
    path = data_dir / SECRET_FILE
    existing = read_key_file(path)
    if existing is None:
        existing = secrets.token_urlsafe(32)
        write_key_file(path, existing)
    if len(existing) < MIN_SECRET_CHARS:
        raise ValueError(f"{path}: the token signing secret needs at least {MIN_SECRET_CHARS} "
                         "characters; delete the file to have a new one made")
    return existing.encode()
