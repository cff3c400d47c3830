"""GET /dashboard: the live dashboard, and GET / leading to it.

The dashboard is static files shipped inside the package (api/static/, docs/dashboard.md
says what each is): an HTML page, hand-written ES modules and a stylesheet, and one
vendored library (uPlot, minified, with its licence). Nothing is built at install or test
time, and the page asks nothing of any origin but this server's: its data comes from the
REST API and the WebSocket /ws.

Every answer here carries a strict Content-Security-Policy: scripts, styles and
connections from this origin only, no inline script or style, no framing. Files are
answered with an ETag and `Cache-Control: no-cache`, so a browser revalidates them (a
304 costs nothing) and an upgraded server is never shown with yesterday's scripts.
"""

from __future__ import annotations

import functools
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .auth import PUBLIC
from .openapi import Endpoint, Reply, routes_of
from .responses import ApiError

STATIC = Path(__file__).parent / "static"

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",  # fetch() of the REST API and the WebSocket /ws (CSP 3: ws: too)
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
# Types the standard library may not know on every system.
_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
          ".svg": "image/svg+xml", ".html": "text/html", ".txt": "text/plain"}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


@functools.cache
def assets() -> dict[str, Asset]:
    """Every file under api/static by its path there (`js/app.js`), read once. Only these
    names are served, so no request can reach a file outside the folder."""
    found = {}
    for path in sorted(STATIC.rglob("*")):
        if path.is_file():
            body = path.read_bytes()
            media_type = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
            if media_type is None:
                media_type = "application/octet-stream"
            if media_type.startswith("text/") or media_type.endswith(("+xml", "json")):
                media_type += "; charset=utf-8"
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            found[path.relative_to(STATIC).as_posix()] = Asset(body, media_type, etag)
    return found


def _answer(request: Request, asset: Asset) -> Response:
    headers = {**SECURITY_HEADERS, "etag": asset.etag, "cache-control": "no-cache"}
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


async def page(request: Request) -> Response:
    return _answer(request, assets()["index.html"])


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    found = assets().get(name)
    if found is None or name == "index.html":
        raise ApiError(404, "NOT_FOUND", f"no dashboard file {name}")
    return _answer(request, found)


async def home(request: Request) -> Response:
    """307 (temporary), not 301: a browser remembers a 301, and where / leads is the
    server's to change (a sign-in page, once there is authentication)."""
    return RedirectResponse("/dashboard")


endpoints = [
    Endpoint("GET", "/", home, "A redirect to the dashboard", tag="dashboard",
             replies={307: Reply("a redirect to /dashboard", None)}, access=PUBLIC),
    Endpoint("GET", "/dashboard", page, "The live dashboard (an HTML page)", tag="dashboard",
             replies={200: Reply("the page", str, media_type="text/html"),
                      304: Reply("not modified since the version the browser has (its ETag)")},
             description="Overview, tasks, task detail, schedules, workers and queues, kept "
             "live over /ws (docs/dashboard.md).", access=PUBLIC),
    Endpoint("GET", "/dashboard/assets/{name:path}", asset, "A file of the dashboard",
             tag="dashboard",
             replies={200: Reply("the file: a script, a stylesheet, an image or a licence",
                                 str, media_type="*/*"),
                      304: Reply("not modified since the version the browser has (its ETag)")},
             errors={404: "no dashboard file of that name"}, access=PUBLIC),
]
routes = routes_of(endpoints)
