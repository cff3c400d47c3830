"""The dashboard's session cookie (services/security/sessions.py says what a session is):
reading it, setting it, and the two checks a cookie needs that a bearer header does not.

A browser sends a cookie with every request to this server, whoever's page made it; a
header it sends only when this server's own script adds it. So a request authenticated
by the cookie must also prove it comes from the dashboard:
- a change (any method but GET, HEAD, OPTIONS) carries the session's CSRF token in the
  X-CSRF-Token header (`check_csrf`): another site's page cannot read the token, and so
  cannot send it;
- a WebSocket's Origin is a page of this server (`check_origin`): browsers always send it on
  a WebSocket handshake, and SameSite does not stop another site's socket to a site the
  browser has open.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import cookie_parser
from starlette.responses import Response
from starlette.types import Scope

from jobledger.services.security.principals import Principal, Unauthenticated
from jobledger.services.security.sessions import Session, csrf_matches
from jobledger.services.security.setup import Security

from .responses import ApiError

COOKIE = "jobledger_session"
CSRF_HEADER = "X-CSRF-Token"
SESSION = "jobledger.session"  # the scope key of the session a request came with
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def session_id_of(scope: Scope) -> str | None:
    """The session cookie's value, if the request has one."""
    for name, value in scope["headers"]:
        if name == b"cookie":
            found = cookie_parser(bytes(value).decode("latin-1")).get(COOKIE)
            if found:
                return found
    return None


def session_principal(scope: Scope, security: Security, session_id: str) -> Principal:
    """The principal of a cookie-authenticated request: its session resolved again
    (Unauthenticated, and the session ended, if its credential no longer authenticates),
    then the cookie's own check (ApiError 403 CSRF_FAILED). The session is left in
    scope[SESSION]."""
    session = security.sessions.get(session_id)
    if session is None:
        raise Unauthenticated("the dashboard session has ended: sign in again")
    try:
        principal = security.resolve(session)
    except Unauthenticated as exc:
        security.sessions.close(session_id)
        raise Unauthenticated(f"the dashboard session has ended: {exc}") from None
    if scope["type"] == "websocket":
        check_origin(scope)
    elif scope["method"] not in _SAFE:
        check_csrf(scope, session)
    scope[SESSION] = session
    return principal


def check_csrf(scope: Scope, session: Session) -> None:
    """A change made with the session cookie carries the session's CSRF token."""
    if not csrf_matches(session, _header(scope, CSRF_HEADER.lower().encode())):
        raise ApiError(403, "CSRF_FAILED", f"a change made with the dashboard's session "
                       f"cookie needs its {CSRF_HEADER} header (GET /auth/session gives it)")


def check_origin(scope: Scope) -> None:
    """A WebSocket authenticated by the cookie was opened by a page of this server: its
    Origin's host and port are the Host it asked for. The scheme is not compared: behind a
    proxy that ends TLS, the page is https and the socket reaches us as plain ws."""
    origin = _header(scope, b"origin")
    host = _header(scope, b"host") or ""
    if origin is None or urlsplit(origin).netloc.lower() != host.lower():
        raise ApiError(403, "CSRF_FAILED", f"a WebSocket signed in by the session cookie must "
                       f"come from a page of {host}, not from {origin or 'no Origin'}")


def set_session_cookie(response: Response, scope: Scope, session_id: str,
                       max_age_s: int) -> None:
    """HttpOnly (no script reads it), SameSite=Strict (no other site's request carries
    it), Path=/ (the API and /ws), and Secure when the request came over https."""
    response.set_cookie(COOKIE, session_id, max_age=max_age_s, path="/", httponly=True,
                        samesite="strict", secure=scope.get("scheme") == "https")


def clear_session_cookie(response: Response, scope: Scope) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                           secure=scope.get("scheme") == "https")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None
