"""Creating and checking the tables replicator needs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from botocore.exceptions import ClientError

from replicator.aws import classify, error_code
from replicator.errors import ConfigError, ResourceNotFound
from replicator.models import WireItem

ACTIVE_TIMEOUT_SECONDS = 120.0


async def describe(client: Any, table: str) -> dict[str, Any] | None:
    """The table's description, None when it does not exist."""
    try:
        response = await client.describe_table(TableName=table)
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise classify(exc) from exc
    except Exception as exc:
        raise classify(exc) from exc
    description: dict[str, Any] = response["Table"]
    return description


async def wait_active(client: Any, table: str) -> None:
    deadline = time.monotonic() + ACTIVE_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        description = await describe(client, table)
        if description and description.get("TableStatus") == "ACTIVE":
            return
        await asyncio.sleep(0.2)
    raise ResourceNotFound(f"table {table} did not become ACTIVE in {ACTIVE_TIMEOUT_SECONDS:.0f} s")


async def ensure_table(
    client: Any,
    table: str,
    key_schema: list[tuple[str, str, str]],
    *,
    stream: bool = False,
    ttl_attribute: str | None = None,
) -> bool:
    """Create ``table`` (on-demand) if missing; True when it was created.

    ``key_schema`` is [(name, "HASH"|"RANGE", "S"|"N"|"B"), ...].
    """
    if await describe(client, table) is not None:
        return False
    spec: dict[str, Any] = {
        "TableName": table,
        "KeySchema": [{"AttributeName": n, "KeyType": k} for n, k, _ in key_schema],
        "AttributeDefinitions": [
            {"AttributeName": n, "AttributeType": t} for n, _, t in key_schema
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if stream:
        spec["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
    try:
        await client.create_table(**spec)
    except ClientError as exc:
        if error_code(exc) != "ResourceInUseException":
            raise classify(exc) from exc
    await wait_active(client, table)
    if ttl_attribute:
        try:
            await client.update_time_to_live(
                TableName=table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute},
            )
        except Exception as exc:
            raise classify(exc) from exc
    return True


CONTROL_KEY = [("pk", "HASH", "S"), ("sk", "RANGE", "S")]


async def require_table(client: Any, table: str, region: str, *, stream: bool = False) -> None:
    """Fail with a configuration error when a configured table is missing or has no stream."""
    description = await describe(client, table)
    if description is None:
        raise ConfigError(f"table {table} does not exist in {region} — create it or fix the config")
    if stream:
        spec = description.get("StreamSpecification") or {}
        if not spec.get("StreamEnabled") or spec.get("StreamViewType") != "NEW_AND_OLD_IMAGES":
            raise ConfigError(
                f"table {table} in {region} has no NEW_AND_OLD_IMAGES stream — enable it with "
                "StreamSpecification StreamViewType=NEW_AND_OLD_IMAGES"
            )


async def query_partition(client: Any, table: str, partition: str) -> AsyncIterator[WireItem]:
    """Every item of a control-shaped table (pk, sk) under ``pk = partition``, read consistently."""
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": partition}},
        "ConsistentRead": True,
    }
    while True:
        try:
            page = await client.query(**kwargs)
        except Exception as exc:
            raise classify(exc) from exc
        for item in page.get("Items", []):
            yield item
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def key_schema_of(description: dict[str, Any]) -> list[tuple[str, str, str]]:
    types = {a["AttributeName"]: a["AttributeType"] for a in description["AttributeDefinitions"]}
    return [
        (k["AttributeName"], k["KeyType"], types[k["AttributeName"]])
        for k in description["KeySchema"]
    ]
