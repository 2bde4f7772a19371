"""``replicator run`` as a subprocess against two moto regions, checked by ``replicator verify``."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from replicator.aws.factory import Clients
from replicator.config.schema import load_config
from replicator.demo.loadgen import LoadGenerator
from replicator.pipeline.checkpoint import CheckpointStore
from tests.e2e.helpers import (
    SOURCE,
    TARGET,
    cli,
    converged,
    create_tables,
    start_run,
    stop,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.slow]


def summary(log: Path) -> dict[str, int]:
    """The outcome counts ``replicator run`` logs when it stops gracefully."""
    line = next(x for x in reversed(log.read_text().splitlines()) if "summary:" in x)
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


@pytest.mark.timeout(240)
async def test_2000_random_operations_replicate_and_verify_finds_no_difference(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    config_path = write_config(tmp_path / "replicator.yaml", endpoints, unique_name)
    config = load_config(config_path)
    await create_tables(config)
    process = start_run(config_path, tmp_path / "run.log")
    clients = Clients(config.endpoints)
    try:
        load = LoadGenerator(await clients.json("dynamodb", SOURCE), unique_name, keys=150, seed=7)
        stats = await load.run(operations=2000, concurrency=4)
        assert sum(stats.counts.values()) >= 2000  # conflicts are operations too
        assert stats.counts["delete"] > 50
        assert stats.counts["recreate"] > 10
        await converged(config_path, within=120)
    finally:
        await clients.aclose()
        assert stop(process) == 0, (tmp_path / "run.log").read_text()[-3000:]

    result = cli("verify", "-c", str(config_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^0 differences", result.stdout, re.M)
    counts = summary(tmp_path / "run.log")
    assert counts["applied"] > 0
    assert counts["dead_lettered"] >= 1  # the unversioned writes went to the DLQ, not nowhere


@pytest.mark.timeout(240)
async def test_kill_9_mid_backlog_resumes_from_checkpoint_with_duplicates_not_losses(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    # A slow write rate makes a batch take seconds, so the kill lands inside one.
    config_path = write_config(
        tmp_path / "replicator.yaml", endpoints, unique_name, max_writes_per_second=150
    )
    config = load_config(config_path)
    await create_tables(config)
    clients = Clients(config.endpoints)
    log = tmp_path / "run.log"
    try:
        source = await clients.json("dynamodb", SOURCE)
        target = await clients.json("dynamodb", TARGET)
        await LoadGenerator(source, unique_name, keys=400, seed=3).run(
            operations=2000, concurrency=4
        )

        async def target_items() -> int:
            page = await target.scan(TableName=unique_name, Select="COUNT")
            return int(page["Count"])

        first = start_run(config_path, log)
        await wait_until(lambda: _at_least(target_items, 50), within=60, what="50 applied items")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)

        checkpoints = await CheckpointStore(source, config.control_table).load(unique_name)
        applied_before_kill = await target_items()
        second = start_run(config_path, log)
        try:
            await converged(config_path, within=120)
        finally:
            assert stop(second) == 0, log.read_text()[-3000:]
    finally:
        await clients.aclose()

    counts = summary(log)
    # Everything the killed run applied past its checkpoint came again: duplicates, not losses.
    assert counts["duplicate"] > 0, (counts, applied_before_kill, checkpoints)
    result = cli("verify", "-c", str(config_path))
    assert result.returncode == 0 and "0 differences" in result.stdout, result.stdout


async def _at_least(count: object, minimum: int) -> bool:
    assert callable(count)
    return bool(await count() >= minimum)
