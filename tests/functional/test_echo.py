"""The echo check across two replicators running in opposite directions (DESIGN §4)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from replicator.aws.factory import Clients
from replicator.aws.tables import ensure_table
from replicator.config.schema import Config, parse_config
from replicator.service.run import metrics_for, run_service
from replicator.telemetry.metrics import Metrics
from tests.e2e.helpers import wait_until

A, B = "us-east-1", "eu-west-1"
pytestmark = pytest.mark.timeout(120)


def one_way(source: str, target: str, table: str, endpoints: dict[str, str]) -> Config:
    return parse_config(
        {
            "source_region": source,
            "endpoints": {A: endpoints[A], B: endpoints[B]},
            "control_table": f"{table}-control",
            "dlq_table": f"{table}-dlq",
            "pairs": [{"source_table": table, "targets": [{"region": target, "table": table}]}],
            "web": {"enabled": False},
            "heartbeat": {"enabled": False},
        }
    )


@pytest.fixture
async def both_directions(
    endpoints: dict[str, str], unique_name: str
) -> AsyncIterator[tuple[Clients, dict[str, Metrics]]]:
    configs = {A: one_way(A, B, unique_name, endpoints), B: one_way(B, A, unique_name, endpoints)}
    clients = Clients(endpoints)
    for region in (A, B):
        await ensure_table(
            await clients.json("dynamodb", region), unique_name, [("pk", "HASH", "S")], stream=True
        )
    stop = asyncio.Event()
    metrics = {region: metrics_for(config) for region, config in configs.items()}
    services = [
        asyncio.create_task(run_service(config, stop=stop, metrics=metrics[region]))
        for region, config in configs.items()
    ]
    try:
        yield clients, metrics
    finally:
        stop.set()
        await asyncio.gather(*services)
        await clients.aclose()


async def get(clients: Clients, region: str, table: str, key: str) -> dict[str, dict[str, str]]:
    response = await (await clients.json("dynamodb", region)).get_item(
        TableName=table, Key={"pk": {"S": key}}, ConsistentRead=True
    )
    item: dict[str, dict[str, str]] = response.get("Item", {})
    return item


async def test_a_replicated_write_is_not_sent_back_but_an_app_update_to_it_is(
    both_directions: tuple[Clients, dict[str, Metrics]], unique_name: str
) -> None:
    clients, metrics = both_directions
    source = await clients.json("dynamodb", A)
    await source.put_item(
        TableName=unique_name, Item={"pk": {"S": "k"}, "version": {"N": "1"}, "v": {"S": "a"}}
    )

    async def replicated_to_b() -> bool:
        return (await get(clients, B, unique_name, "k")).get("_rep_origin") == {"S": A}

    await wait_until(replicated_to_b, within=60, what="the write to reach eu-west-1")
    # B's replicator reads its own replicated write on B's stream and recognises the echo.
    await wait_until(
        lambda: _async(metrics[B].status()["totals"]["skipped"].get("echo", 0) >= 1),
        within=60,
        what="eu-west-1's replicator to skip the echo",
    )
    assert metrics[B].total("applied") == 0
    assert "_rep_origin" not in await get(clients, A, unique_name, "k")  # never came back to A

    # An application update in B to the replicated item raises its version: it is B's write.
    await (await clients.json("dynamodb", B)).update_item(
        TableName=unique_name,
        Key={"pk": {"S": "k"}},
        UpdateExpression="SET #v = :v, v = :text",
        ExpressionAttributeNames={"#v": "version"},
        ExpressionAttributeValues={":v": {"N": "2"}, ":text": {"S": "edited in B"}},
    )

    async def update_reached_a() -> bool:
        item = await get(clients, A, unique_name, "k")
        return item.get("v") == {"S": "edited in B"}

    await wait_until(update_reached_a, within=60, what="B's update to reach us-east-1")
    item = await get(clients, A, unique_name, "k")
    assert item["_rep_origin"] == {"S": B} and item["version"] == {"N": "2"}
    assert metrics[B].total("applied") == 1


async def _async(value: bool) -> bool:
    return value
