"""A real browser on the dashboard: Playwright for Python driving Debian's chromium package
(Playwright's own browser download cannot be fetched here, and is not needed).

`Dashboard` is one page of it, recording what a test checks afterwards: console errors
(a Content-Security-Policy violation is one), uncaught exceptions, and every request that
leaves the server's origin."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, ConsoleMessage, Page, Request, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
WAIT_MS = 10_000  # real time; only reached when something is broken
VIEWPORT = {"width": 1280, "height": 860}


def screenshots_folder(default: Path) -> Path:
    """Where the screenshots of a test run go: $JOBLEDGER_SCREENSHOTS (docs/img to renew
    the pictures of docs/dashboard.md), else `default` (a temporary folder)."""
    folder = Path(os.environ.get("JOBLEDGER_SCREENSHOTS") or default)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install -y chromium "
                           "(the README's test command installs it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Dashboard:
    """One page of the dashboard of the server at `base` (http://127.0.0.1:port)."""

    def __init__(self, browser: Browser, base: str, shots: Path, **context: Any):
        self.base = base
        self.shots = shots
        self.context = browser.new_context(viewport=VIEWPORT, **context)
        self.page: Page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.console: list[tuple[str, str]] = []
        self.off_origin: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.console.append(("pageerror", str(error))))
        self.page.on("request", self._request)

    def _console(self, message: ConsoleMessage) -> None:
        self.console.append((message.type, message.text))

    def _request(self, request: Request) -> None:
        ws = self.base.replace("http://", "ws://")
        if not request.url.startswith((self.base + "/", ws + "/", "data:")):
            self.off_origin.append(request.url)

    def open(self, route: str = "") -> None:
        """Load the dashboard at a hash route (#/tasks) and wait until it is live."""
        self.page.goto(f"{self.base}/dashboard{route}")
        self.wait_live()

    def go(self, route: str) -> None:
        """Follow a hash route within the loaded page, as a link does: no reload."""
        self.page.evaluate("route => { location.hash = route; }", route)

    def wait_live(self) -> None:
        self.page.wait_for_selector('#connection[data-state="live"]')

    def errors(self) -> list[tuple[str, str]]:
        return [(kind, text) for kind, text in self.console if kind in ("error", "pageerror")]

    def row(self, task_id: str) -> str:
        return f'#tasks-table [role=row][data-task-id="{task_id}"]'

    def shown_task_ids(self) -> list[str]:
        ids: list[str] = self.page.eval_on_selector_all(
            "#tasks-table .rows [role=row]", "rows => rows.map(r => r.dataset.taskId)")
        return ids

    def confirm(self) -> None:
        """Press the confirmation dialog's confirm button."""
        self.page.click("#confirm[open] #confirm-ok")

    def css_color(self, variable: str) -> str:
        """The theme's colour `variable` (--blue) as computed colours are written."""
        color: str = self.page.evaluate("""name => {
            const probe = document.createElement('span');
            probe.style.color = `var(${name})`;
            document.body.append(probe);
            const color = getComputedStyle(probe).color;
            probe.remove();
            return color;
        }""", variable)
        return color

    def color_of(self, selector: str) -> str:
        """The element's computed colour. Waited for: a live view may replace the element
        between two frames, and a detached element has no computed style ('')."""
        color: str = self.page.wait_for_function(
            """selector => {
                const el = document.querySelector(selector);
                return (el && el.isConnected && getComputedStyle(el).color) || null;
            }""", arg=selector).json_value()
        return color

    def screenshot(self, name: str) -> None:
        """Save the view as shots/<name>.png."""
        self.page.screenshot(path=str(self.shots / f"{name}.png"))

    def close(self) -> None:
        self.context.close()
