"""The dashboard through a burst (issue 19): `dashboard_jobs` tasks posted in batches of
1,000 a second while Chromium shows the tasks view live, and the page's main thread is
watched for long tasks (Chromium's `longtask` entries: any task of 50 ms or more).

Two phases on one page, in one run: first IDLE_SECONDS with nothing happening, then the
burst, until the newest task shows as completed in the table. The figures are the longest
task of each phase and how many tasks of 50 ms or more the burst had; the issue's target is
none. The yardstick, measured on the same page just before the burst, is how long a fixed
piece of JavaScript (CALIBRATION: building, encoding and sorting 20,000 rows) takes: the
machine's speed and load as the page sees them, so a burst figure can be read against it.

Chromium is Debian's (/usr/bin/chromium), driven by Playwright (a test dependency); the
workload reports n/a where it is missing.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.env import Env
from bench.ledger import JobledgerSystem

CHROMIUM = Path("/usr/bin/chromium")
BATCH = 1_000  # tasks per POST, one a second: the 1,000 jobs/s
IDLE_SECONDS = 10.0
DONE_TIMEOUT_S = 120.0
LONG_MS = 50.0  # Chromium's threshold for a long task, and the target
CALIBRATION = """() => {
  const times = [];
  for (let run = 0; run < 5; run++) {
    const start = performance.now();
    const rows = Array.from({length: 20000}, (_, i) => ({id: `t-${(i * 7919) % 20000}`, n: i}));
    JSON.parse(JSON.stringify(rows)).sort((a, b) => a.id.localeCompare(b.id));
    times.push(performance.now() - start);
  }
  return times.sort((a, b) => a - b)[2];
}"""
# Recorded from the page's first moment: every long task, by duration in ms.
OBSERVE_LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__longTasks.push(entry.duration);
}).observe({type: 'longtask', buffered: true});
"""


async def dashboard_burst(system: JobledgerSystem, env: Env) -> dict[str, Any]:
    if not CHROMIUM.exists():
        return {}
    from playwright.async_api import async_playwright

    async with system.mode.serve(env, env.scratch(f"dashboard-{system.key}"),
                                 workers=True) as server, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            await page.add_init_script(OBSERVE_LONG_TASKS)
            await page.goto(f"{server.url}/dashboard#/tasks")
            await page.wait_for_selector("#tasks-table .rows[data-rows]", state="attached")
            await page.wait_for_load_state("networkidle")
            idle = await _long_tasks_during(page, asyncio.sleep(IDLE_SECONDS))
            calibration = await page.evaluate(CALIBRATION)
            burst = await _long_tasks_during(page, _burst(server, page, env.sizes.dashboard_jobs))
        finally:
            await browser.close()
    return {
        "idle_longest_ms": round(max(idle, default=0.0), 1),
        "burst_longest_ms": round(max(burst, default=0.0), 1),
        "burst_long_tasks": sum(1 for d in burst if d >= LONG_MS),
        "calibration_ms": round(calibration, 1),
        "details": {"burst_long_task_ms": sorted(round(d, 1) for d in burst)[-10:]},
    }


async def _long_tasks_during(page: Any, phase: Any) -> list[float]:
    """The long tasks the page had while `phase` (an awaitable) ran."""
    await page.evaluate("window.__longTasks.length = 0")
    await phase
    return list(await page.evaluate("window.__longTasks"))


async def _burst(server: Any, page: Any, jobs: int) -> None:
    """Post `jobs` tasks, BATCH a second, then wait for the newest to show completed."""
    start, newest = time.monotonic(), ""
    for second in range(max(1, jobs // BATCH)):
        body = {"tasks": [{"task_type": "noop", "payload": i} for i in range(BATCH)]}
        answer = await server.http.post("/api/v1/tasks/batch", json=body)
        answer.raise_for_status()
        newest = max(answer.json()["task_ids"])  # UUIDv7: the last of the batch sorts first
        await asyncio.sleep(max(0.0, start + second + 1 - time.monotonic()))
    await page.wait_for_selector(f'#tasks-table [data-task-id="{newest}"][data-status="completed"]',
                                 timeout=DONE_TIMEOUT_S * 1000)
