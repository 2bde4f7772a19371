"""``replicator replay`` refusals, each one line and exit 2 before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from replicator.aws.factory import Clients
from replicator.config.schema import Config
from replicator.ha.store import LeaseStore
from tests.e2e.helpers import SOURCE, cli, wait_until
from tests.functional.kinesis_rig import KinesisPair, alive

pytestmark = pytest.mark.timeout(60)


def refused(path: Path, table: str, since: str) -> str:
    """The one line ``replay`` printed; it must have exited 2."""
    result = cli("replay", "-c", str(path), "--pair", table, "--since", since)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


async def test_a_dynamodb_streams_pair_is_pointed_at_backfill(
    pair: tuple[Config, Path, Clients],
) -> None:
    config, path, _ = pair
    table = config.pairs[0].source_table
    line = refused(path, table, "1h")
    assert f"--pair {table} reads its DynamoDB stream" in line
    assert f"replicator backfill --pair {table}" in line


async def test_a_time_past_the_tombstone_ttl_or_the_retention_is_refused(
    kinesis_pair: KinesisPair,
) -> None:
    path, table = kinesis_pair.path, kinesis_pair.table
    # tombstone_ttl is 3d: older replays could resurrect items whose tombstones expired.
    line = refused(path, table, "4d")
    assert "is older than tombstone_ttl (259200 s" in line and "bring those items back" in line
    # Within the tombstone_ttl, but the stream keeps 24 h.
    line = refused(path, table, "30h")
    assert f"older than Kinesis stream {table}'s retention of 24 h" in line
    assert "in the future" in refused(path, table, "2999-01-01T00:00:00Z")
    assert "neither an ISO 8601 time nor a duration" in refused(path, table, "yesterday")
    assert await kinesis_pair.checkpoints() == {}, "a refused replay wrote nothing"


async def test_a_replay_while_a_replicator_holds_the_lease_is_refused_unless_forced(
    kinesis_pair: KinesisPair,
) -> None:
    path, table = kinesis_pair.path, kinesis_pair.table
    async with kinesis_pair.running() as (service, metrics):

        async def active() -> bool:
            alive(service)
            return [view["role"] for view in metrics.leases.status()] == ["active"]

        await wait_until(active, within=20, what="the replicator holding the lease")
        line = refused(path, table, "1h")
        assert "holds the table's lease" in line and "--force" in line
    # Stopped, the replicator released its lease: the same replay goes through.
    result = cli("replay", "-c", str(path), "--pair", table, "--since", "1h")
    assert result.returncode == 0, result.stderr
    assert "2 checkpoint(s) of 2 shard(s) moved" in result.stdout


async def test_force_replays_past_the_lease_of_a_replicator_that_died_holding_it(
    kinesis_pair: KinesisPair,
) -> None:
    path, table, config = kinesis_pair.path, kinesis_pair.table, kinesis_pair.config
    home = await kinesis_pair.clients.json("dynamodb", SOURCE)
    store = LeaseStore(home, config.control_table, duration=config.lease.duration_seconds)
    assert await store.swap(table, None, "crashed-host") is not None
    assert "replicator crashed-host holds the table's lease" in refused(path, table, "1h")
    forced = cli("replay", "-c", str(path), "--pair", table, "--since", "1h", "--force")
    assert forced.returncode == 0, forced.stderr
    assert len(await kinesis_pair.checkpoints()) == 2
