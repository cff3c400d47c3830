"""The one error shape, {"error", "code", "field", "details"}, for every answer that is not
a success: the codes, and the exception handlers that turn exceptions into them.

Handlers raise `ApiError` (or a domain error translated here: InvalidJob, NotFound,
Conflict, LogError); Starlette's own 404 and 405 become JSON too, and anything else is a
bug, answered 500 INTERNAL and logged. Add a handler by adding an entry to
`EXCEPTION_HANDLERS`; add a code to `CODES` (docs/api.md lists them, and a test checks
that it does).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route, WebSocketRoute

from jobledger.services.log.protocol import AppendOutcomeUnknown, LogError
from jobledger.services.security.commands import KeyCommandError
from jobledger.services.write.commands import Conflict, NotFound
from jobledger.services.write.producer import InvalidJob

from .responses import ApiError

log = logging.getLogger("jobledger.api")

# code -> the status it is answered with. Each code means one thing; `error` says the rest.
CODES: dict[str, int] = {
    "MALFORMED_JSON": 400,  # the body (or a payload in it) is not JSON, or not UTF-8
    "PAYLOAD_TOO_DEEP": 400,  # a payload nests more arrays and objects than the limit
    "INVALID_ARGUMENT": 400,  # a body field or a parameter is missing, unknown or invalid
    "UNKNOWN_TASK_TYPE": 400,  # no handler is known for the task type (the error lists them)
    "HOST_NOT_ALLOWED": 400,  # the Host header is not one of --allowed-hosts
    "AS_OF_IN_FUTURE": 400,  # an as_of after the server's time, or past the log's end
    "AS_OF_BEFORE_RETAINED": 400,  # an as_of before what --log-retention kept of the log
    "UNAUTHORIZED": 401,  # no credential, or one that is unknown, revoked or expired
    "FORBIDDEN": 403,  # the credential lacks the permission the route needs (`details`)
    "CROSS_SITE_REFUSED": 403,  # a state-changing request without JSON from a foreign Origin
    "CSRF_FAILED": 403,  # signed in by the session cookie, without its X-CSRF-Token/Origin
    "NOT_FOUND": 404,  # no such task or run, or no such path
    "METHOD_NOT_ALLOWED": 405,  # the path exists, the method does not (see the Allow header)
    "CONFLICT": 409,  # the task's state does not allow it
    # The schedules API keeps the codes its APScheduler-style users know (api/schedules.py):
    "INVALID_TRIGGER": 400,  # a schedule's trigger or timezone cannot fire
    "JOB_NOT_FOUND": 404,  # no schedule with that id
    "JOB_EXISTS": 409,  # a schedule with that id exists
    "PAYLOAD_TOO_LARGE": 413,  # the body, or one task's payload, is over its limit
    "UNSUPPORTED_MEDIA_TYPE": 415,  # a body sent as something other than application/json
    "UNPROCESSABLE": 422,  # every field is valid, but together they cannot be applied
    "UPGRADE_REQUIRED": 426,  # a plain HTTP GET of a WebSocket endpoint
    "RATE_LIMITED": 429,  # the key has spent its rate limit; Retry-After says when to retry
    "HEADERS_TOO_LARGE": 431,  # the headers, or one the API keeps (X-API-Key-Name), too long
    "INTERNAL": 500,  # a bug: never bad input
    "LOG_UNAVAILABLE": 503,  # the append failed; nothing was written
    "OUTCOME_UNKNOWN": 504,  # the append may or may not have landed; retry with the same key
}

ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidJob)
    return ApiError(CODES[exc.code], exc.code, str(exc), exc.field).response()


async def _not_found(request: Request, exc: Exception) -> Response:
    return ApiError(404, "NOT_FOUND", str(exc)).response()


async def _conflict(request: Request, exc: Exception) -> Response:
    return ApiError(409, "CONFLICT", str(exc)).response()


async def _key_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KeyCommandError)
    return ApiError(exc.status, exc.code, str(exc), exc.field).response()


async def _log_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, AppendOutcomeUnknown):
        message = f"{without_folders(str(exc))}; retry with the same idempotency_key"
        return ApiError(504, "OUTCOME_UNKNOWN", message).response()
    return ApiError(503, "LOG_UNAVAILABLE", without_folders(str(exc))).response()


# The folders of an absolute path in a message: after a space, a quote or a bracket (so
# not the "/O" of "I/O"), up to the last slash before a file name.
_FOLDERS = re.compile(r"""(?<![^\s'"(\[])/(?:[^\s/'"]+/)+(?=[^\s/'"])""")


def without_folders(message: str) -> str:
    """The message with each absolute path cut to its file name. A log's errors name its
    file by the path it was opened with (`append to /srv/data/jl.db failed: ...`): the CLI
    prints that, but an API answer must not tell a caller where the data lives. The log
    and its read models sit in one data folder, so the name is the path relative to it."""
    return _FOLDERS.sub("", message)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's routing errors (no route, wrong method) in the one error shape."""
    assert isinstance(exc, HTTPException)
    where = f"{request.method} {request.url.path}"
    allowed = allowed_methods(request)
    if exc.status_code == 404 and not allowed:
        return ApiError(404, "NOT_FOUND", f"no endpoint at {request.url.path}").response()
    if exc.status_code == 404 and request.method in ("GET", "HEAD"):  # a WebSocket path
        response = ApiError(426, "UPGRADE_REQUIRED",
                            f"{request.url.path} is a WebSocket endpoint; connect with "
                            "a WebSocket client (GET with Upgrade: websocket)").response()
        response.headers["Upgrade"] = "websocket"
        return response
    if exc.status_code in (404, 405):
        response = ApiError(405, "METHOD_NOT_ALLOWED",
                            f"{where} is not allowed; allowed: {', '.join(allowed)}").response()
        response.headers["Allow"] = ", ".join(allowed)
        return response
    code = exc.detail.upper().replace(" ", "_") if exc.detail else f"HTTP_{exc.status_code}"
    response = ApiError(exc.status_code, code, f"{where}: {exc.detail}").response()
    response.headers.update(exc.headers or {})
    return response


def allowed_methods(request: Request) -> list[str]:
    """The methods of the resource at this path: of every route with the same template as
    the first route that matches it (Starlette's own Allow header names only that first
    route's methods, though GET and DELETE /tasks/{task_id} are two routes). A literal
    path listed first (/tasks/batch) wins over a template that also matches it. A
    WebSocket route allows GET (the upgrade); none at all: []."""
    as_websocket = {**request.scope, "type": "websocket"}
    matching: list[tuple[str, set[str]]] = []
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods:
            if route.matches(request.scope)[0] is not Match.NONE:
                matching.append((route.path, route.methods))
        elif isinstance(route, WebSocketRoute) and route.matches(as_websocket)[0] is Match.FULL:
            matching.append((route.path, {"GET"}))
    if not matching:
        return []
    template = matching[0][0]
    return sorted({m for path, methods in matching if path == template for m in methods})


async def _internal(request: Request, exc: Exception) -> Response:
    """A bug. Logged here with the request; Starlette re-raises it afterwards, so the
    server logs it too."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return ApiError(500, "INTERNAL", "internal error; it has been logged").response()


EXCEPTION_HANDLERS: dict[type[Exception] | int, ExceptionHandler] = {
    ApiError: _api_error,
    InvalidJob: _invalid,
    NotFound: _not_found,
    Conflict: _conflict,
    KeyCommandError: _key_error,
    LogError: _log_error,
    HTTPException: _http_error,
    Exception: _internal,
}
