"""Three regions, one active-active replicator each (star topology), for tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from replicator.aws.factory import Clients
from replicator.aws.tables import ensure_table
from replicator.config.schema import Config, parse_config
from replicator.service.run import metrics_for, run_service
from replicator.telemetry.metrics import Metrics
from replicator.tools.verify import verify
from tests.e2e.helpers import wait_until

A, B, C = "ap-southeast-2", "eu-west-1", "us-east-1"  # sorted: C wins ties
REGIONS = (A, B, C)


def region_config(
    region: str, table: str, endpoints: dict[str, str], regions: tuple[str, ...] = REGIONS
) -> Config:
    others = [r for r in regions if r != region]
    return parse_config(
        {
            "source_region": region,
            "mode": "active-active",
            "endpoints": {r: endpoints[r] for r in regions},
            "control_table": f"{table}-control",
            "dlq_table": f"{table}-dlq",
            "conflicts_table": f"{table}-conflicts",
            "pairs": [
                {"source_table": table, "targets": [{"region": r, "table": table} for r in others]}
            ],
            "web": {"enabled": False},
            "heartbeat": {"enabled": False},
        }
    )


@dataclass
class Mesh:
    """Regions (three unless told) with one replicator each."""

    table: str
    clients: Clients
    configs: dict[str, Config]
    metrics: dict[str, Metrics]
    regions: tuple[str, ...] = REGIONS

    async def db(self, region: str) -> Any:
        return await self.clients.json("dynamodb", region)

    async def item(self, region: str, key: str) -> dict[str, Any] | None:
        response = await (await self.db(region)).get_item(
            TableName=self.table, Key={"pk": {"S": key}}, ConsistentRead=True
        )
        found: dict[str, Any] | None = response.get("Item")
        return found

    async def put(self, region: str, key: str, version: int, **data: str) -> None:
        item = {"pk": {"S": key}, "version": {"N": str(version)}}
        item.update({name: {"S": value} for name, value in data.items()})
        await (await self.db(region)).put_item(TableName=self.table, Item=item)

    async def delete(self, region: str, key: str) -> None:
        await (await self.db(region)).delete_item(TableName=self.table, Key={"pk": {"S": key}})

    async def everywhere(self, key: str, check: Any, what: str) -> None:
        """Wait until ``check(item)`` holds for the key in every region."""

        async def holds() -> bool:
            return all([check(await self.item(region, key)) for region in self.regions])

        await wait_until(holds, within=60, what=what)

    async def assert_converged(self) -> None:
        for region in self.regions:
            report = await verify(self.configs[region], recheck_delay=0.2)
            assert report.differences == [], [str(d) for d in report.differences]


@asynccontextmanager
async def running_mesh(
    endpoints: dict[str, str], table: str, regions: tuple[str, ...] = REGIONS
) -> AsyncIterator[Mesh]:
    clients = Clients(endpoints)
    for region in regions:
        await ensure_table(
            await clients.json("dynamodb", region),
            table,
            [("pk", "HASH", "S")],
            stream=True,
            ttl_attribute="_rep_expires",
        )
    configs = {r: region_config(r, table, endpoints, regions) for r in regions}
    metrics = {r: metrics_for(configs[r]) for r in regions}
    stop = asyncio.Event()
    services = [
        asyncio.create_task(run_service(configs[r], stop=stop, metrics=metrics[r])) for r in regions
    ]
    try:
        yield Mesh(table, clients, configs, metrics, regions)
    finally:
        stop.set()
        await asyncio.gather(*services)
        await clients.aclose()
