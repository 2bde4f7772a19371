"""Creating and checking the tables replicator needs (every call through the retry policy)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from botocore.exceptions import ClientError

from replicator.aws.backoff import pause
from replicator.aws.classify import error_code
from replicator.aws.json_client import DynamoDB
from replicator.aws.retry import RetryPolicy
from replicator.errors import ConfigError, ResourceNotFound, ShutdownInterrupted

ACTIVE_TIMEOUT_SECONDS = 120.0
ACTIVE_POLL_SECONDS = 0.2


async def describe(
    client: DynamoDB, table: str, *, retry: RetryPolicy | None = None
) -> dict[str, Any] | None:
    """The table's description, None when it does not exist."""

    async def attempt() -> dict[str, Any] | None:
        try:
            response = await client.describe_table(TableName=table)
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        description: dict[str, Any] = response["Table"]
        return description

    return await (retry or RetryPolicy()).call("DescribeTable", client.region, attempt)


async def wait_active(client: DynamoDB, table: str, *, retry: RetryPolicy | None = None) -> None:
    """Until ``table`` is ACTIVE; the retry policy's ``stop`` (SIGTERM) ends the waiting."""
    policy = retry or RetryPolicy()
    stop = policy.stop or asyncio.Event()
    deadline = time.monotonic() + ACTIVE_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        description = await describe(client, table, retry=policy)
        if description and description.get("TableStatus") == "ACTIVE":
            return
        if await pause(ACTIVE_POLL_SECONDS, stop):
            raise ShutdownInterrupted(f"stopped while table {table} was not yet ACTIVE")
    raise ResourceNotFound(f"table {table} did not become ACTIVE in {ACTIVE_TIMEOUT_SECONDS:.0f} s")


async def ensure_table(
    client: DynamoDB,
    table: str,
    key_schema: list[tuple[str, str, str]],
    *,
    stream: bool = False,
    ttl_attribute: str | None = None,
    retry: RetryPolicy | None = None,
) -> bool:
    """Create ``table`` (on-demand) if missing; True when it was created.

    ``key_schema`` is [(name, "HASH"|"RANGE", "S"|"N"|"B"), ...].
    """
    retry = retry or RetryPolicy()
    region = client.region
    if await describe(client, table, retry=retry) is not None:
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

    async def create() -> None:
        try:
            await client.create_table(**spec)
        except ClientError as exc:
            if error_code(exc) != "ResourceInUseException":  # created meanwhile: fine
                raise

    await retry.call("CreateTable", region, create)
    await wait_active(client, table, retry=retry)
    if ttl_attribute:
        await retry.call(
            "UpdateTimeToLive",
            region,
            lambda: client.update_time_to_live(
                TableName=table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute},
            ),
        )
    return True


CONTROL_KEY = [("pk", "HASH", "S"), ("sk", "RANGE", "S")]


async def partition_items(
    client: DynamoDB, table: str, partition: str, *, retry: RetryPolicy, call: str
) -> AsyncIterator[dict[str, Any]]:
    """Every item of one partition of a ``CONTROL_KEY`` table, strongly consistent."""
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": partition}},
        "ConsistentRead": True,
    }
    region = client.region
    while True:
        page = await retry.call(call, region, lambda: client.query(**kwargs))
        for item in page.get("Items", []):
            yield item
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


async def require_table(
    client: DynamoDB,
    table: str,
    region: str,
    *,
    stream: bool = False,
    key_schema: list[tuple[str, str, str]] | None = None,
    retry: RetryPolicy | None = None,
) -> dict[str, Any]:
    """The table's description, checked as ``check_table`` does."""
    description = await describe(client, table, retry=retry)
    return check_table(description, table, region, stream=stream, key_schema=key_schema)


def check_table(
    description: dict[str, Any] | None,
    table: str,
    region: str,
    *,
    stream: bool = False,
    key_schema: list[tuple[str, str, str]] | None = None,
) -> dict[str, Any]:
    """The table's description; a configuration error when it is missing, has no stream
    (with ``stream``) or is keyed otherwise than ``key_schema`` (its source's)."""
    if description is None:
        raise ConfigError(f"table {table} does not exist in {region} — create it or fix the config")
    if key_schema is not None and sorted(key_schema_of(description)) != sorted(key_schema):
        raise ConfigError(
            f"table {table} in {region} is keyed {_spelled(key_schema_of(description))} but its "
            f"source is keyed {_spelled(key_schema)} — items of the source would merge or be "
            "refused there; create the target with the source's key schema (names, types, "
            "hash and range) or fix the config"
        )
    if stream:
        spec = description.get("StreamSpecification") or {}
        if not spec.get("StreamEnabled") or spec.get("StreamViewType") != "NEW_AND_OLD_IMAGES":
            raise ConfigError(
                f"table {table} in {region} has no NEW_AND_OLD_IMAGES stream — enable it with "
                "StreamSpecification StreamViewType=NEW_AND_OLD_IMAGES"
            )
    return description


def _spelled(key_schema: list[tuple[str, str, str]]) -> str:
    return "(" + ", ".join(f"{name} {type_} {kind}" for name, kind, type_ in key_schema) + ")"


def key_schema_of(description: dict[str, Any]) -> list[tuple[str, str, str]]:
    types = {a["AttributeName"]: a["AttributeType"] for a in description["AttributeDefinitions"]}
    return [
        (k["AttributeName"], k["KeyType"], types[k["AttributeName"]])
        for k in description["KeySchema"]
    ]
