"""The dashboard's conflicts panel in a real browser, fed by the real conflict feed.

A loss recorded by ``ConflictFeed`` into a conflicts table on moto (through the service's
client factory) must show on the page the service serves: the count, its line over time and
the entry with the id ``replicator conflicts show`` takes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from replicator.aws.factory import Clients
from replicator.aws.tables import CONTROL_KEY, ensure_table
from replicator.config.schema import WebConfig
from replicator.models import TargetRef
from replicator.pipeline.conflicts import ConflictFeed
from replicator.telemetry.metrics import Metrics
from replicator.web.server import serve
from tests.e2e.test_dashboard_browser import CHROMIUM, browser_page
from tests.functional.test_conflict_feed_table import loss
from tests.mesh import A, C

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} missing"),
]

PANEL = "#conflicts"
LOST = f'{PANEL} [data-figure="conflicts"]'
CHART = 'canvas[data-chart="conflicts"]'
# Pixels of --bad (the conflicts line), within a tolerance for anti-aliasing.
COUNT_LINE_PIXELS = """canvas => {
  const {data} = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  let count = 0;
  for (let i = 0; i < data.length; i += 4) {
    const d = Math.abs(data[i] - 239) + Math.abs(data[i + 1] - 83) + Math.abs(data[i + 2] - 80);
    if (data[i + 3] >= 200 && d < 60) count++;
  }
  return count;
}"""


@pytest.mark.timeout(60)
async def test_a_recorded_loss_shows_with_its_id_and_the_count_over_time(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    metrics = Metrics(source_region=C, mode="active-active")
    clients = Clients(endpoints)
    problems: list[str] = []
    try:
        db = await clients.json("dynamodb", C)  # as the service builds it
        await ensure_table(db, unique_name, CONTROL_KEY)
        feed = ConflictFeed(db, unique_name, metrics=metrics)
        metrics.sample()
        async with serve(WebConfig(port=0), metrics) as url, browser_page(problems) as page:
            await page.goto(f"{url}/")
            await page.wait_for_function(
                "() => document.querySelector('#connection').textContent === 'live'"
            )
            # Active-active shows the panel before the first loss, with nothing listed.
            assert await page.is_visible(PANEL)
            assert await page.text_content(LOST) == "0"
            assert await page.is_visible("#no-conflicts")

            await feed.record(*loss({"v": {"S": "lost"}}), table="orders", target=TargetRef(A, "t"))
            metrics.sample()
            await page.wait_for_function(
                f"() => document.querySelector('{LOST}').textContent === '1'", timeout=10_000
            )
            (entry,) = metrics.status()["conflicts"]
            (row,) = await page.locator("#conflict-entries tbody tr").all_inner_texts()
            assert entry["id"] in row
            assert "orders" in row and "pk=k" in row
            assert f"{A} v2" in row and f"{C} v2" in row  # the lost write and the winner
            assert f"in {A}" in row
            assert not await page.is_visible("#no-conflicts")
            assert await page.get_attribute(LOST, "data-nonzero") == "true"
            assert await page.get_attribute(CHART, "data-points") == "2"
            assert await page.eval_on_selector(CHART, COUNT_LINE_PIXELS) > 50
            await page.screenshot(path=str(tmp_path / "conflicts.png"), full_page=True)
    finally:
        await clients.aclose()
        metrics.shutdown()
    assert not problems, problems
