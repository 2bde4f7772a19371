"""chaos-report.html in a real browser (Debian's chromium driven by Playwright).

The page must open with the summary table, state the run's parameters as a sentence, and draw
each scenario's chart with its fault window shaded and mark labels that do not overlap, as
chromium lays them out (real text widths, not the report's estimate).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chaos.outcome import Diff, Result, Timeline
from chaos.report import SUMMARY_COLUMNS, write_html

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"{CHROMIUM} missing: apt-get install chromium (.ci/run does)"
    ),
]

# Each chart's mark labels as rendered boxes; any two that intersect are reported.
OVERLAPS = """svg => {
  const boxes = [...svg.querySelectorAll("text.mark")].map(t => t.getBoundingClientRect());
  const hits = [];
  boxes.forEach((a, i) => boxes.slice(i + 1).forEach(b => {
    if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) hits.push(i);
  }));
  return {labels: boxes.length, hits};
}"""


def result(name: str, marks: list[tuple[float, str]], **fields: Any) -> Result:
    timeline = Timeline(samples=[(t / 2, (t % 7) / 3) for t in range(40)], marks=marks)
    timeline.healed_at, timeline.recovered_at = 12.0, 14.5
    return Result(name=name, kind="stream", timeline=timeline, **fields)


RESULTS = [
    # Marks a tenth of a second apart: their labels would be drawn over each other.
    result(
        "throttling",
        [(1.0, "replicating"), (1.1, "fault: reads and writes throttled"), (12.0, "heal")],
        faults={"throttled": 40}, writes=300,
    ),
    result(
        "kill-9",
        [(2.0, "fault: kill -9"), (2.2, "restarted"), (2.3, "fault: kill -9"), (9.0, "restarted")],
        faults={"kill -9": 2}, writes=250, diff=Diff(differences=1, lost=1, examples=["k1"]),
    ),
]  # fmt: skip


async def test_the_report_opens_with_the_summary_and_draws_readable_charts(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    page_path = write_html(
        tmp_path / "chaos-report.html", RESULTS, {"seed": 3, "quick": True, "seconds": 42.4}
    )
    problems: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"]
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda error: problems.append(str(error)))
            await page.goto(page_path.as_uri())

            first = await page.eval_on_selector("h1", "h => h.nextElementSibling.id")
            assert first == "summary"  # the table comes before anything else
            headers = await page.eval_on_selector_all(
                "#summary th", "c => c.map(e => e.textContent)"
            )
            assert headers == list(SUMMARY_COLUMNS)
            rows = await page.eval_on_selector_all(
                "#summary tbody tr", "r => r.map(e => [...e.cells].map(c => c.innerText))"
            )
            assert [row[:2] for row in rows] == [["throttling", "pass"], ["kill-9", "FAIL"]]
            assert rows[1][2:7] == ["kill -9 2", "250", "1", "1", "0"]
            parameters = await page.text_content("#parameters")
            assert parameters == (
                "1 of 2 scenarios passed. Seed 3, quick run (short faults, small workload), "
                "42 s in all."
            )

            charts = await page.query_selector_all("svg[data-chart]")
            assert len(charts) == 2
            for chart in charts:
                box = await chart.bounding_box()
                assert box is not None and box["width"] > 500 and box["height"] > 100
                shaded = await chart.query_selector_all("rect.fault-window")
                assert shaded
                for window in shaded:
                    drawn = await window.bounding_box()
                    assert drawn is not None and drawn["width"] > 0 and drawn["height"] > 50
                labels = await chart.evaluate(OVERLAPS)
                assert labels["labels"] >= 3 and labels["hits"] == []
        finally:
            await browser.close()
    assert problems == []
