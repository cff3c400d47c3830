"""/auth/session: the dashboard's sign-in and sign-out (docs/dashboard.md, "Signing in").

- POST: exchange a credential (`Authorization: Bearer <API key or /auth/login token>`) for a
  session cookie; the answer says who signed in, what they may do and the CSRF token.
- GET: the same answer for the session (or bearer credential) a request comes with: the
  dashboard asks it on load, and a 401 sends it to its sign-in page. With auth off it says
  so, and the dashboard shows no sign-in.
- DELETE: sign out; the session ends on the server, and the cookie is cleared.

GET and POST need read_tasks (every view of the dashboard reads tasks; a key without it
could sign in to nothing). DELETE is public: it only ever ends the caller's own session.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from jobledger.schemas import Permission
from jobledger.schemas.api import ActorView
from jobledger.schemas.common import iso_ms
from jobledger.schemas.security import SessionView
from jobledger.services.security.principals import Principal
from jobledger.services.security.sessions import Session
from jobledger.services.security.setup import Security

from .auth import PUBLIC, principal_of
from .cookies import (
    CSRF_HEADER,
    SESSION,
    check_csrf,
    clear_session_cookie,
    session_id_of,
    set_session_cookie,
)
from .openapi import Endpoint, Reply, routes_of
from .responses import JSON, ApiError

_EVERYTHING = sorted(Permission)


def _security(request: Request) -> Security:
    return request.app.state.security  # type: ignore[no-any-return]  # untyped state


def _view(principal: Principal | None, session: Session | None) -> SessionView:
    if principal is None:  # auth off
        return SessionView(auth=False, actor=None, permissions=_EVERYTHING, csrf_token=None,
                           expires_at=None)
    held = _EVERYTHING if Permission.ADMIN in principal.permissions else sorted(
        principal.permissions)
    return SessionView(auth=True, actor=ActorView.of(principal.actor), permissions=held,
                       csrf_token=session.csrf_token if session else None,
                       expires_at=iso_ms(session.expires_at_ms) if session else None)


async def who_am_i(request: Request) -> Response:
    return JSON(_view(principal_of(request.scope), request.scope.get(SESSION)))


async def sign_in(request: Request) -> Response:
    principal = principal_of(request.scope)
    if principal is None:  # auth off: nothing to sign in to
        return JSON(_view(None, None))
    if request.scope.get(SESSION) is not None:
        raise ApiError(400, "INVALID_ARGUMENT", "send the credential to sign in with as "
                       "`Authorization: Bearer <API key or token>`", "Authorization")
    security = _security(request)
    session_id, session, principal = security.open_session(request.headers["authorization"])
    answer = JSON(_view(principal, session), 201)
    max_age = (session.expires_at_ms - security.sessions.now_ms()) // 1000
    set_session_cookie(answer, request.scope, session_id, max_age)
    return answer


async def sign_out(request: Request) -> Response:
    sessions = _security(request).sessions
    session_id = session_id_of(request.scope)
    session = sessions.get(session_id) if session_id else None
    if session_id is not None and session is not None:
        check_csrf(request.scope, session)  # another site cannot sign the dashboard out
        sessions.close(session_id)
    answer = Response(status_code=204)
    clear_session_cookie(answer, request.scope)
    return answer


_CSRF_ERROR = {403: f"signed in by the cookie, without its {CSRF_HEADER} (CSRF_FAILED)"}
endpoints = [
    Endpoint("GET", "/auth/session", who_am_i, "Who the caller is signed in as", tag="auth",
             replies={200: Reply("the principal, its permissions and the CSRF token",
                                 SessionView)},
             description="With the session cookie: the session's CSRF token, to send as "
             f"{CSRF_HEADER} on every change. With auth off: auth false and every permission.",
             access=Permission.READ_TASKS),
    Endpoint("POST", "/auth/session", sign_in, "Sign the dashboard in: a session cookie",
             tag="auth",
             replies={201: Reply("signed in: the session cookie is set (HttpOnly, "
                                 "SameSite=Strict, Secure over https)", SessionView),
                      200: Reply("auth is off: no session is needed", SessionView)},
             errors={400: "no Authorization header: the cookie cannot sign in again"},
             description="Send `Authorization: Bearer <API key>` or the token of POST "
             "/auth/login. The cookie holds a random session id, never the credential; each "
             "request checks the credential again, so a revoked key ends the session. It "
             "lasts 12 hours, and no longer than the token it came from.",
             access=Permission.READ_TASKS),
    Endpoint("DELETE", "/auth/session", sign_out, "Sign out: end the session", tag="auth",
             replies={204: Reply("signed out (or was not signed in); the cookie is cleared")},
             errors=_CSRF_ERROR, access=PUBLIC),
]
routes = routes_of(endpoints)
