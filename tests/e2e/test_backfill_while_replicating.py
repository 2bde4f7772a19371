"""Issue 14, must-show 1: a table that held data before its stream, backfilled while
``replicator run`` replicates a live versioned writer; the backfill is killed with -9
midway, resumes, and verify then finds nothing missing."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from replicator.aws.factory import Clients
from replicator.aws.tables import ensure_table
from replicator.config.schema import load_config
from replicator.demo.loadgen import LoadGenerator
from replicator.tools.progress import ProgressStore
from tests.e2e.helpers import (
    SOURCE,
    TARGET,
    cli,
    converged,
    start_cli,
    start_run,
    stop,
    wait_until,
    write_config,
)
from tests.functional.test_verify_at_scale import batch_put
from tests.records import image

pytestmark = [pytest.mark.slow]
ITEMS = 4000


@pytest.mark.timeout(420)
async def test_backfill_killed_with_9_resumes_while_replicating_and_verify_is_clean(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    config_path = write_config(tmp_path / "replicator.yaml", endpoints, unique_name)
    config = load_config(config_path)
    clients = Clients(config.endpoints)
    source = await clients.json("dynamodb", SOURCE)
    key = [("pk", "HASH", "S")]
    await ensure_table(source, unique_name, key)
    await ensure_table(await clients.json("dynamodb", TARGET), unique_name, key)
    await batch_put(source, unique_name, [image(f"k{n:05d}", 1) for n in range(ITEMS)])
    stream = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    await source.call("UpdateTable", {"TableName": unique_name, "StreamSpecification": stream})
    run = start_run(config_path, tmp_path / "run.log")
    backfill_log = tmp_path / "backfill.log"
    try:
        writer = LoadGenerator(source, unique_name, keys=ITEMS, seed=11)
        progress = ProgressStore(source, config.control_table)

        async def scanned(at_least: int) -> bool:
            return sum(p.scanned for p in await progress.load(unique_name)) >= at_least

        first = start_cli(backfill_log, "backfill", "-c", str(config_path), "--segments", "4")
        # The versioned writer changes the seeded keys while the backfill runs.
        await writer.run(operations=300, concurrency=2)
        await wait_until(lambda: scanned(ITEMS // 4), within=180, what="a quarter backfilled")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert not await scanned(ITEMS), "the kill came after the backfill finished"

        await writer.run(operations=200, concurrency=2)
        second = cli("backfill", "-c", str(config_path), "--segments", "4", timeout=300)
        assert second.returncode == 0, second.stdout + second.stderr
        assert f"resumed the backfill of {unique_name}" in second.stdout
        # Scanned across both runs: every seeded key, less the ones the writer deleted.
        scanned_total = int(re.findall(r"^backfill: (\d+) scanned", second.stdout, re.M)[0])
        assert ITEMS - 500 < scanned_total <= ITEMS + 1, second.stdout
        await converged(config_path, within=120)
    finally:
        await clients.aclose()
        assert stop(run) == 0, (tmp_path / "run.log").read_text()[-3000:]
    result = cli("verify", "-c", str(config_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^0 differences", result.stdout, re.M), result.stdout
