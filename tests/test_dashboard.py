"""GET /dashboard and its files: served from the package with a strict
Content-Security-Policy, only the files under api/static, revalidated by ETag; the page
has no inline script or style; the vendored library is the release it says; and the
package data of pyproject.toml puts every file in the wheel."""

from __future__ import annotations

import glob
import hashlib
import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from jobledger.api.dashboard import CONTENT_SECURITY_POLICY, STATIC, assets
from jobledger.services.handlers.app import App
from jobledger.services.node.embedded import EmbeddedNode
from tests.support.api_harness import api_client, assert_error
from tests.support.harness import NodeFactory

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def client(make_node: NodeFactory) -> AsyncIterator[httpx.AsyncClient]:
    node: EmbeddedNode = await make_node(App())
    async with api_client(node) as c:
        yield c


def referenced(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/[^"]*)"', html)


async def test_the_page_is_served_with_a_strict_policy(client: httpx.AsyncClient) -> None:
    response = await client.get("/dashboard")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = dict(part.split(" ", 1) for part in response.headers["content-security-policy"]
                  .split("; "))
    assert policy["default-src"] == "'none'"
    for directive in ("script-src", "style-src", "connect-src"):
        assert policy[directive] == "'self'", directive  # no 'unsafe-inline', no other host
    assert policy["frame-ancestors"] == "'none'"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-cache"


async def test_every_file_the_page_names_is_served_from_this_origin(
    client: httpx.AsyncClient,
) -> None:
    html = (await client.get("/dashboard")).text
    names = [n for n in referenced(html) if n != "/docs"]  # /docs: the page without script
    assert names and all(n.startswith("/dashboard/assets/") for n in names), names
    for name in names:
        response = await client.get(name)
        assert response.status_code == 200, name
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert (await client.get("/dashboard/assets/js/main.js")).headers["content-type"] == (
        "text/javascript; charset=utf-8")
    assert (await client.get("/dashboard/assets/app.css")).headers["content-type"] == (
        "text/css; charset=utf-8")


async def test_a_file_the_browser_has_answers_304(client: httpx.AsyncClient) -> None:
    first = await client.get("/dashboard/assets/js/live.js")
    again = await client.get("/dashboard/assets/js/live.js",
                             headers={"if-none-match": first.headers["etag"]})
    assert (again.status_code, again.content) == (304, b"")
    assert again.headers["etag"] == first.headers["etag"]


@pytest.mark.parametrize("name", ["nope.js", "../dashboard.py", "js/../../app.py",
                                  "index.html", "js"])
async def test_only_the_files_under_static_are_served(
    client: httpx.AsyncClient, name: str
) -> None:
    assert_error(await client.get(f"/dashboard/assets/{name}"), 404, "NOT_FOUND")


def test_no_inline_script_or_style_anywhere() -> None:
    html = (STATIC / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "an inline script"
    assert "<style" not in html and " style=" not in html and " on" not in html.replace(
        " only", "")
    for path in STATIC.glob("js/**/*.js"):
        code = path.read_text()
        for forbidden in (".innerHTML", ".outerHTML", "insertAdjacentHTML", "eval(",
                          "new Function", "setAttribute('style'", "cssText"):
            assert forbidden not in code, f"{path.name} uses {forbidden}"


def test_the_vendored_library_is_the_release_its_readme_names() -> None:
    readme = (STATIC / "vendor" / "README.txt").read_text()
    hashes = dict((name, digest) for digest, name in
                  re.findall(r"sha256 ([0-9a-f]{64})  (\S+)", readme))
    assert set(hashes) == {"uPlot.iife.min.js", "uPlot.min.css"}
    for name, digest in hashes.items():
        assert hashlib.sha256((STATIC / "vendor" / name).read_bytes()).hexdigest() == digest
    assert "MIT License" in (STATIC / "vendor" / "uPlot.LICENSE.txt").read_text()


def test_the_package_data_puts_every_file_in_the_wheel() -> None:
    # What setuptools does with package-data: each pattern globbed (recursively) under the
    # package's folder. `pip wheel . --no-deps` was checked to contain the same list.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folder = ROOT / config["package-dir"]["jobledger.api"]
    packaged = {
        Path(found).relative_to(folder / "static").as_posix()
        for pattern in config["package-data"]["jobledger.api"]
        for found in glob.glob(str(folder / pattern), recursive=True) if Path(found).is_file()
    }
    assert packaged == set(assets()) and "vendor/uPlot.iife.min.js" in packaged
