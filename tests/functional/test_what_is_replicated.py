"""What is replicated, end to end on moto through the production wiring: a pair's item
filter and excluded attributes in ``replicator run`` (``run_service``), ``backfill``,
``verify`` and ``verify --repair``; its TTL-delete policy in the Lambda handler."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from replicator.apply.rule import visible
from replicator.aws.factory import Clients
from replicator.config.schema import Config, load_config, parse_config
from replicator.models import Meta, WireItem
from replicator.service.run import metrics_for, run_service
from replicator.stream.fake_records import TTL_IDENTITY
from replicator.stream.source import Page, Shard, StreamSource
from replicator.tools.backfill import backfill
from replicator.tools.repair import repair
from replicator.tools.verify import verify
from tests.e2e.helpers import SOURCE, TARGET, create_tables, wait_until, write_config
from tests.esm_driver import EsmDriver, Mapping
from tests.functional.test_backfill import Recorder
from tests.lambda_rig import EU, US, Rig, lambda_rig

pytestmark = pytest.mark.timeout(120)
META = Meta(version="version")
# Items of region eu (or uk) with a tier of at least 2 are replicated; ssn never is.
SELECTED: dict[str, Any] = {
    "filter": {
        "all": [
            {"attribute": "region", "in": ["eu", "uk"]},
            {"not": {"attribute": "tier", "lt": 2}},
        ]
    },
    "exclude_attributes": ["ssn"],
}


def item(key: str, version: int, region: str, *, tier: int = 3) -> WireItem:
    return {
        "pk": {"S": key},
        "version": {"N": str(version)},
        "region": {"S": region},
        "tier": {"N": str(tier)},
        "ssn": {"S": "078-05-1120"},
    }


@pytest.fixture
async def selected(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> AsyncIterator[tuple[Config, Clients]]:
    path = write_config(tmp_path / "replicator.yaml", endpoints, unique_name, **SELECTED)
    config = load_config(path)
    await create_tables(config)
    clients = Clients(config.endpoints)
    try:
        yield config, clients
    finally:
        await clients.aclose()


async def put(clients: Clients, table: str, value: WireItem) -> None:
    await (await clients.json("dynamodb", SOURCE)).put_item(TableName=table, Item=value)


async def held(clients: Clients, table: str, key: str) -> dict[str, Any] | None:
    """What a reader of the target sees of ``key``, as Python values (None: nothing, or a
    tombstone)."""
    answer = await (await clients.json("dynamodb", TARGET)).get_item(
        TableName=table, Key={"pk": {"S": key}}, ConsistentRead=True
    )
    return visible(answer.get("Item"), META)


async def test_run_replicates_filter_of_source_without_excluded_attributes_as_items_move(
    selected: tuple[Config, Clients], unique_name: str
) -> None:
    config, clients = selected
    table = unique_name
    stop = asyncio.Event()
    service = asyncio.create_task(run_service(config, stop=stop, metrics=metrics_for(config)))

    async def shows(key: str, version: int | None) -> None:
        async def there() -> bool:
            seen = await held(clients, table, key)
            return seen is not None and seen["version"] == version

        async def gone() -> bool:
            return await held(clients, table, key) is None

        what = f"{key} at version {version} on the target" if version else f"{key} gone"
        await wait_until(there if version else gone, within=60, what=what)

    try:
        await put(clients, table, item("kept", 1, "eu"))
        await put(clients, table, item("other-region", 1, "us"))
        await put(clients, table, item("low-tier", 1, "uk", tier=1))
        await shows("kept", 1)
        assert await held(clients, table, "other-region") is None
        assert await held(clients, table, "low-tier") is None

        # An item that stops matching leaves the target, and comes back when it matches.
        await put(clients, table, item("kept", 2, "us"))
        await shows("kept", None)
        await put(clients, table, item("kept", 3, "uk"))
        await shows("kept", 3)
        # Deleted, re-created outside the filter (version reset), then matching again.
        await (await clients.json("dynamodb", SOURCE)).delete_item(
            TableName=table, Key={"pk": {"S": "kept"}}
        )
        await put(clients, table, item("kept", 1, "us"))
        await shows("kept", None)
        await put(clients, table, item("kept", 2, "eu"))
        await shows("kept", 2)

        seen = await held(clients, table, "kept")
        assert seen is not None and "ssn" not in seen and seen["region"] == "eu"
        # The heartbeat canary matches no filter, and travels all the same: lag is measured by it.
        assert await held(clients, table, f"{config.heartbeat.key_prefix}#{SOURCE}") is not None
        assert not (await verify(config, recheck_delay=0.1)).differences
    finally:
        stop.set()
        await service


async def test_backfill_writes_only_matching_items_without_excluded_attributes(
    selected: tuple[Config, Clients], unique_name: str
) -> None:
    config, clients = selected
    for n in range(6):
        await put(clients, unique_name, item(f"k{n}", 4, "eu" if n % 2 else "us"))

    summary = await backfill(config, Recorder(), segments=2)

    assert (summary.scanned, summary.filtered) == (6, 3)
    for n in range(6):
        seen = await held(clients, unique_name, f"k{n}")
        assert (seen is not None) is bool(n % 2)
        assert seen is None or "ssn" not in seen
    assert not (await verify(config, recheck_delay=0.05)).differences


async def test_verify_reports_a_copy_left_outside_the_filter_and_repair_deletes_it(
    selected: tuple[Config, Clients], unique_name: str
) -> None:
    config, clients = selected
    target = await clients.json("dynamodb", TARGET)
    for key, region in (("left-behind", "us"), ("matching", "eu")):
        await put(clients, unique_name, item(key, 2, region))
        # Both copied by hand before the filter (and the exclusion) was configured.
        await target.put_item(TableName=unique_name, Item=item(key, 2, region))

    report = await verify(config, recheck_delay=0.05)

    # The excluded ssn on the old copy is no difference; the copy outside the filter is.
    assert [(d.key[0][2], d.kind) for d in report.differences] == [("left-behind", "extra")]
    assert (await repair(config, report)).repaired == 1
    assert await held(clients, unique_name, "left-behind") is None
    assert not (await verify(config, recheck_delay=0.05)).differences


# --- TTL deletes, in Lambda mode ---------------------------------------------------------


class TtlSweeper:
    """Our stream seam: moto's REMOVE records, marked as DynamoDB's TTL sweeper makes
    them (moto never expires items itself)."""

    def __init__(self, inner: StreamSource) -> None:
        self.inner = inner

    async def stream_arn(self, table: str) -> str:
        return await self.inner.stream_arn(table)

    async def shards(self, stream_arn: str) -> list[Shard]:
        return await self.inner.shards(stream_arn)

    async def iterator(self, stream_arn: str, shard_id: str, *, after: str | None) -> str:
        return await self.inner.iterator(stream_arn, shard_id, after=after)

    async def get_records(self, iterator: str, *, limit: int = 1000) -> Page:
        page = await self.inner.get_records(iterator, limit=limit)
        for record in page.records:
            if record["eventName"] == "REMOVE":
                record["userIdentity"] = dict(TTL_IDENTITY)
        return page


def lambda_config(rig: Rig, endpoints: dict[str, str], **selection: Any) -> Config:
    return parse_config(
        {
            "source_region": US,
            "endpoints": {region: endpoints[region] for region in (US, EU)},
            "control_table": f"{rig.table}-control",
            "dlq_table": f"{rig.table}-dlq",
            "pairs": [
                {
                    "source_table": rig.table,
                    "targets": [{"region": EU, "table": rig.table}],
                    **selection,
                }
            ],
            "web": {"enabled": False},
        }
    )


@pytest.mark.parametrize(("policy", "kept"), [("skip", True), ("replicate", False)])
async def test_a_ttl_expiry_is_replicated_as_a_delete_unless_the_pair_skips_it(
    endpoints: dict[str, str], unique_name: str, policy: str, kept: bool
) -> None:
    async with lambda_rig(endpoints, unique_name) as rig:
        config = lambda_config(rig, endpoints, ttl_deletes=policy, ttl_attribute="expires_at")
        driver = EsmDriver(
            TtlSweeper(rig.source), rig.stream_arn, [rig.function(config=config)], Mapping()
        )
        await rig.put("expired", 1, expires_at={"N": "1000"})  # long past
        await rig.put("deleted", 1)
        await driver.drain()
        await rig.delete("expired")  # as the TTL sweeper would (the seam marks it so)
        await driver.drain()

        target = await rig.db(EU)
        answer = await target.get_item(TableName=rig.table, Key={"pk": {"S": "expired"}})
        assert (visible(answer.get("Item"), META) is not None) is kept

        # Verify counts the expired item as absent on both sides with skip.
        assert not (await verify(config, recheck_delay=0.05)).differences


async def test_the_lambda_handler_applies_the_same_filter_and_exclusion(
    endpoints: dict[str, str], unique_name: str
) -> None:
    async with lambda_rig(endpoints, unique_name) as rig:
        config = lambda_config(rig, endpoints, **SELECTED)
        driver = rig.driver([rig.function(config=config)])
        for key, version, region in (("in", 1, "eu"), ("out", 1, "us"), ("moved", 1, "eu")):
            await put_item(rig, item(key, version, region))
        await driver.drain()
        await put_item(rig, item("moved", 2, "us"))
        await driver.drain()

        clients = rig.clients
        seen = await held(clients, rig.table, "in")
        assert seen is not None and "ssn" not in seen
        assert await held(clients, rig.table, "out") is None
        assert await held(clients, rig.table, "moved") is None
        assert not (await verify(config, recheck_delay=0.05)).differences


async def put_item(rig: Rig, value: WireItem) -> None:
    await (await rig.db()).put_item(TableName=rig.table, Item=value)


async def test_an_excluded_key_attribute_stops_run_at_start_up_naming_it(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    path = write_config(
        tmp_path / "replicator.yaml", endpoints, unique_name, exclude_attributes=["pk"]
    )
    config = load_config(path)
    await create_tables(config)

    with pytest.raises(Exception, match="exclude_attributes names 'pk', a key attribute"):
        await run_service(config, stop=asyncio.Event(), metrics=metrics_for(config))
