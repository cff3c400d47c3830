"""What the API refuses before any route sees a request, with auth on or off
(docs/security.md, "Cross-site and exposure"; the settings: services/security/exposure.py).

- `AllowedHosts`: a Host header not on the list is answered 400 HOST_NOT_ALLOWED, HTTP
  and WebSocket alike, so a DNS-rebinding name that points at this server reaches nothing.
- `RequestRules`:
  - a body whose Content-Length is over --max-body-bytes is answered 413 up front, before
    any of it is read, on every route (a chunked one is counted as it is read:
    api/body.py);
  - a state-changing request (POST, PUT, PATCH, DELETE) either sends JSON or sends no body
    type at all from no foreign origin (`cross_site_refusal` says why that is the rule).

Both run on every request, so they read the headers in one pass and build nothing on the
way through. What they and auth cost the busiest route: docs/performance.md, "Figures
behind the code".
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from jobledger.services.security.exposure import ExposureSettings, host_name

from .body import body_too_large, require_json
from .openapi import STATE_CHANGING
from .responses import ApiError, send_refusal


class AllowedHosts:
    """400 HOST_NOT_ALLOWED for a Host header that is not one of `hosts`."""

    def __init__(self, app: ASGIApp, hosts: Collection[str]):
        self.app = app
        self.hosts = frozenset(hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = _header(scope["headers"], b"host")
            if host is None or host_name(host) not in self.hosts:
                await send_refusal(scope, send, _host_refused(host))
                return
        await self.app(scope, receive, send)


def _host_refused(host: str | None) -> ApiError:
    if host is None:
        return ApiError(400, "HOST_NOT_ALLOWED", "the request has no Host header", "host")
    return ApiError(400, "HOST_NOT_ALLOWED", f"this server does not answer to the Host "
                    f"{host[:100]!r}; its operator lists the names it answers to with "
                    "--allowed-hosts", "host")


class RequestRules:
    """The body limit and the cross-site rule of every HTTP request."""

    def __init__(self, app: ASGIApp, settings: ExposureSettings):
        self.app = app
        self.max_body_bytes = settings.max_body_bytes
        self.trusted_origins = frozenset(settings.cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self.refusal(scope)
            if refusal is not None:
                await send_refusal(scope, send, refusal)
                return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> ApiError | None:
        content_type = length = origin = host = None
        for name, value in scope["headers"]:  # one pass: this runs on every request
            if name == b"content-type" and content_type is None:
                content_type = value.decode("latin-1")
            elif name == b"content-length" and length is None:
                length = value.decode("latin-1")
            elif name == b"origin" and origin is None:
                origin = value.decode("latin-1")
            elif name == b"host" and host is None:
                host = value.decode("latin-1")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return body_too_large(f"the body is {length} bytes; at most "
                                  f"{self.max_body_bytes} are accepted")
        if scope["method"] not in STATE_CHANGING:
            return None
        return cross_site_refusal(content_type, origin, host, self.trusted_origins)


def cross_site_refusal(content_type: str | None, origin: str | None, host: str | None,
                       trusted: Collection[str]) -> ApiError | None:
    """Why a state-changing request is refused, if it is.

    A browser sends a cross-origin request without asking the server first (a CORS
    preflight) only when it is "simple": a POST whose body is a form
    (application/x-www-form-urlencoded, multipart/form-data) or text/plain, or has no body.
    Those are the cross-site request forgeries (an HTML form that cancels a task, a
    `fetch(..., {mode: "no-cors"})` that pauses a queue). So:
    - `Content-Type: application/json` passes: a page of another origin can send it only
      after a preflight, which CORS (off, or --cors-origin's allowlist) refuses.
    - Any other content type is 415: every body the API takes is JSON.
    - No content type (a body-less cancel, requeue, pause, resume, trigger, DELETE)
      passes unless an `Origin` header names a foreign origin: browsers send Origin on
      every POST, PUT, PATCH and DELETE, and a page's own origin or an allowlisted one is
      not foreign; curl, the CLI and the Python client send none.
    """
    if content_type is not None:
        try:
            require_json(content_type)
        except ApiError as refused:  # 415 naming what was sent
            return refused
        return None
    # A request signed in by the dashboard's session cookie also needs its CSRF token;
    # that is checked with its credential (api/auth.py, api/cookies.py:check_csrf).
    if origin is None or is_trusted_origin(origin, host, trusted):
        return None
    return ApiError(403, "CROSS_SITE_REFUSED", f"a request from the page of {origin[:100]!r} "
                    "that changes state is refused: send Content-Type: application/json",
                    "origin")


def is_trusted_origin(origin: str, host: str | None, trusted: Collection[str]) -> bool:
    """Is origin this server's own (its host and port are the Host the request was sent
    to, whatever the scheme: TLS may end at a proxy) or one of the allowlisted ones?"""
    origin = origin.strip().lower()
    if origin in trusted:
        return True
    netloc = urlsplit(origin).netloc
    return bool(netloc) and host is not None and netloc == host.strip().lower()


def origin_refusal(scope: Scope, trusted: Collection[str]) -> str | None:
    """Why a WebSocket upgrade from a browser page of a foreign origin is refused (the
    reason of its close), if it is: None without Origin (not a browser) or from a trusted
    origin."""
    headers = scope["headers"]
    origin = _header(headers, b"origin")
    if origin is None or is_trusted_origin(origin, _header(headers, b"host"), trusted):
        return None
    return f"WebSocket from the page of {origin[:60]!r} refused: not this server's origin"


def _header(headers: Iterable[tuple[bytes, bytes]], wanted: bytes) -> str | None:
    for name, value in headers:
        if name == wanted:
            return value.decode("latin-1")
    return None
