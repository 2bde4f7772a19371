"""The dashboard in a real browser (Debian's chromium driven by Playwright).

It must draw the lag chart from ``/api/status`` history and keep the lag figure live, under
the server's Content-Security-Policy and without any network beyond the service itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from replicator.config.schema import WebConfig
from replicator.web.server import serve

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAIR = "orders -> eu-west-1/orders"
CHART = 'canvas[data-chart="lag"]'
LAG = '[data-figure="lag"]'
NO_VALUE = "\u2013"  # the en dash the dashboard shows for a missing figure
DASHBOARD_LINE = re.compile(r"dashboard: (http://127\.0\.0\.1:\d+/)")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"{CHROMIUM} missing: apt-get install chromium (.ci/run does)"
    ),
]

# Pixels of the three series colours (p50, p99, heartbeat in dashboard.css), within a tolerance
# for anti-aliasing: proof that lines were drawn, not just axes and labels.
COUNT_LINE_PIXELS = """canvas => {
  const colours = [[79, 195, 247], [255, 183, 77], [129, 199, 132]];
  const {data} = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  let count = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] < 200) continue;
    const near = ([r, g, b]) =>
      Math.abs(data[i] - r) + Math.abs(data[i + 1] - g) + Math.abs(data[i + 2] - b) < 60;
    if (colours.some(near)) count++;
  }
  return count;
}"""
CHART_DRAWN = f"() => Number(document.querySelector('{CHART}')?.dataset.points || 0) > 1"
LAG_CHANGED = f"before => {{ const e = document.querySelector('{LAG}'); return e && e.textContent !== before; }}"  # noqa: E501


class GrowingStatus:
    """A StatusSource whose history gains a sample, and whose lag moves, on every call."""

    def __init__(self) -> None:
        self.calls = 0
        self.history: list[dict[str, Any]] = []

    def status(self) -> dict[str, Any]:
        self.calls += 1
        now = 1_700_000_000.0 + self.calls
        wave = (self.calls % 7) / 10  # goes up and down so the chart has shape
        self.history.append(
            {"t": now, "pairs": {PAIR: {"p50": 0.05 + wave / 4, "p99": 0.3 + wave,
                                        "heartbeat_lag": 0.02 + wave / 8, "throughput": 40.0}}}
        )  # fmt: skip
        return {
            "service": {"source_region": "us-east-1", "mode": "one-way", "role": "standby",
                        "instance": "host-b:7:b2", "started_at": 1_700_000_000.0, "now": now,
                        "version": "0.1.0"},
            "totals": {"records_read": 40 * self.calls, "applied": 30 * self.calls,
                       "superseded": 5 * self.calls, "duplicate": 5 * self.calls,
                       "dead_lettered": 0, "retries": 0, "trimmed": 0, "version_regressions": 0,
                       "skipped": {"echo": 0}},
            "pairs": [
                {"source_table": "orders", "target": "eu-west-1/orders",
                 "target_region": "eu-west-1", "target_table": "orders",
                 "applied": 30 * self.calls, "superseded": 5 * self.calls,
                 "duplicate": 5 * self.calls, "dead_lettered": 0, "in_flight": 3,
                 "throughput_per_second": 40.0,
                 "lag_seconds": {"last": 0.1 + wave, "p50": 0.05 + wave / 4, "p99": 0.3 + wave},
                 "heartbeat": {"lag_seconds": 0.02 + self.calls / 1000, "age_seconds": 12.5}}
            ],
            "shards": [
                {"source_table": "orders", "shard_id": "shardId-00000001",
                 "target": "eu-west-1/orders", "checkpoint": f"{self.calls:040d}",
                 "ended": False, "reading": True}
            ],
            "leases": [
                {"source_table": "orders", "role": "standby", "state": "watching",
                 "holder": "host-a:4:a1"}
            ],
            "history": list(self.history),
        }  # fmt: skip

    def prometheus_text(self) -> bytes:
        return b""

    def ready(self) -> tuple[bool, str]:
        return True, "ok"


@contextlib.asynccontextmanager
async def browser_page(problems: list[str]) -> AsyncIterator[Any]:
    """A chromium page; console errors and page errors (a CSP violation too) go to problems."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on(
                "console",
                lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None,
            )
            yield page
        finally:
            await browser.close()


async def assert_chart_drawn_and_lag_live(page: Any, *, within_ms: int) -> None:
    await page.wait_for_function(CHART_DRAWN, timeout=within_ms)
    first = await page.text_content(LAG)
    assert first and first != NO_VALUE
    await page.wait_for_function(LAG_CHANGED, arg=first, timeout=within_ms)
    assert await page.eval_on_selector(CHART, COUNT_LINE_PIXELS) > 50


@pytest.mark.timeout(60)
async def test_dashboard_draws_the_lag_chart_and_keeps_the_lag_live(tmp_path: Path) -> None:
    source, problems = GrowingStatus(), list[str]()
    async with serve(WebConfig(port=0), source) as url, browser_page(problems) as page:
        await page.goto(f"{url}/")
        await assert_chart_drawn_and_lag_live(page, within_ms=15_000)
        assert await page.get_attribute(CHART, "data-pair") == PAIR
        # A heartbeat older than 10 s turns red.
        assert await page.get_attribute("[data-heartbeat]", "data-stale") == "true"
        assert await page.text_content('[data-label="lag"]') == "lag (heartbeat)"
        assert await page.text_content('[data-figure="throughput"]') == "40.0 /s"
        rows = await page.locator("#shards tbody tr").all_inner_texts()
        assert len(rows) == 1
        assert "shardId-00000001" in rows[0]
        assert await page.text_content("#connection") == "live"
        assert await page.text_content("#role") == "standby"
        assert not await page.is_visible("#conflicts")  # one-way: last-writer-wins loses nothing
        leases = await page.text_content("#leases")
        assert leases and "orders: standby (watching), lease held by host-a:4:a1" in leases
        await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    assert not problems, problems
    assert (tmp_path / "dashboard.png").stat().st_size > 0


@pytest.mark.timeout(30)
async def test_dashboard_with_no_history_yet(tmp_path: Path) -> None:
    class Empty(GrowingStatus):
        def status(self) -> dict[str, Any]:
            document = super().status()
            return {**document, "history": [], "shards": []}

    problems: list[str] = []
    async with serve(WebConfig(port=0), Empty()) as url, browser_page(problems) as page:
        await page.goto(f"{url}/")
        await page.wait_for_function(
            "() => document.querySelector('#connection').textContent === 'live'"
        )
        assert await page.get_attribute(CHART, "data-points") == "0"
        assert await page.is_visible("#no-shards")
        await page.screenshot(path=str(tmp_path / "empty.png"))
    assert not problems, problems


async def collect(stream: asyncio.StreamReader, lines: list[str], url: asyncio.Future[str]) -> None:
    """Drain the demo's output (a full pipe would stall it) and pick out the dashboard URL."""
    async for raw in stream:
        line = raw.decode(errors="replace")
        lines.append(line)
        if not url.done() and (match := DASHBOARD_LINE.search(line)):
            url.set_result(match[1])


@pytest.mark.timeout(300)
async def test_dashboard_of_a_running_demo(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "replicator", "demo", "--duration", "25", "--web-port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    found: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    reader = asyncio.create_task(collect(process.stdout, lines, found))
    try:
        either: set[asyncio.Future[Any]] = {found, reader}  # the URL, or the demo's end
        done, _ = await asyncio.wait(either, timeout=90, return_when="FIRST_COMPLETED")
        assert found in done, "no 'dashboard: URL' line in the demo output:\n" + "".join(lines)
        problems: list[str] = []
        async with browser_page(problems) as page:
            await page.goto(found.result())
            await assert_chart_drawn_and_lag_live(page, within_ms=20_000)
            await page.screenshot(path=str(tmp_path / "demo-dashboard.png"), full_page=True)
        assert not problems, problems
        code = await asyncio.wait_for(process.wait(), timeout=180)
        await reader
        output = "".join(lines)
        assert code == 0, output[-4000:]
        assert re.search(r"\b0 differences\b", output), output[-4000:]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
