"""The typed client: every operation the product makes is a method, sent as itself.

A missing method once reached production (``delete_item``, looked up at run time by
``__getattr__``): the checkpoint of a retired shard could not be deleted and the service
stopped at every start. Methods are checked by mypy; this holds the rest: no run-time
lookup is left, and each method reaches DynamoDB (moto) as the operation it is named for,
binary keys included.
"""

from __future__ import annotations

import base64
import inspect
import re

import pytest

from replicator.aws.factory import Clients
from replicator.aws.json_client import DynamoDB, JsonClient, Streams
from replicator.aws.tables import describe, ensure_table
from tests.e2e.counting_proxy import counting_proxy

pytestmark = pytest.mark.timeout(30)

REGION = "us-east-1"
KEY = {"pk": {"B": base64.b64encode(b"\x00\xfe key").decode()}}


def operations(kind: type[JsonClient]) -> set[str]:
    """DynamoDB's names of the operations ``kind`` offers (``get_item`` -> ``GetItem``)."""
    return {
        re.sub(r"(?:^|_)(\w)", lambda m: m[1].upper(), name)
        for name, method in vars(kind).items()
        if not name.startswith("_") and inspect.iscoroutinefunction(method)
    }


def test_no_operation_is_looked_up_at_run_time() -> None:
    for kind in (JsonClient, DynamoDB, Streams):
        assert "__getattr__" not in vars(kind), f"{kind.__name__} dispatches by name"
    assert not hasattr(JsonClient, "get_item")  # the wire alone: operations are per service
    assert "get_records" not in vars(DynamoDB) and "put_item" not in vars(Streams)


async def test_each_method_reaches_dynamodb_as_the_operation_it_is_named_for(
    endpoints: dict[str, str], unique_name: str
) -> None:
    async with counting_proxy(endpoints[REGION]) as (proxy, url):
        clients = Clients({REGION: url})
        try:
            db = await clients.json("dynamodb", REGION)
            streams = await clients.json("dynamodbstreams", REGION)
            await ensure_table(db, unique_name, [("pk", "HASH", "B")], stream=True)
            await ensure_table(db, f"{unique_name}-ttl", [("pk", "HASH", "S")], ttl_attribute="x")
            await db.put_item(TableName=unique_name, Item={**KEY, "v": {"N": "1"}})
            await db.update_item(
                TableName=unique_name,
                Key=KEY,
                UpdateExpression="SET v = :v",
                ExpressionAttributeValues={":v": {"N": "2"}},
            )
            got = await db.get_item(TableName=unique_name, Key=KEY, ConsistentRead=True)
            queried = await db.query(
                TableName=unique_name,
                KeyConditionExpression="pk = :k",
                ExpressionAttributeValues={":k": KEY["pk"]},
            )
            scanned = await db.scan(TableName=unique_name)
            await db.delete_item(TableName=unique_name, Key=KEY)
            description = await describe(db, unique_name)
            assert description is not None
            arn = description["LatestStreamArn"]
            shards = (await streams.describe_stream(StreamArn=arn))["StreamDescription"]
            iterator = await streams.get_shard_iterator(
                StreamArn=arn,
                ShardId=shards["Shards"][0]["ShardId"],
                ShardIteratorType="TRIM_HORIZON",
            )
            records = await streams.get_records(ShardIterator=iterator["ShardIterator"])
        finally:
            await clients.aclose()

    assert got["Item"] == queried["Items"][0] == scanned["Items"][0] == {**KEY, "v": {"N": "2"}}
    assert [r["dynamodb"]["Keys"] for r in records["Records"]] == [KEY, KEY, KEY]
    sent = {request.operation for request in proxy.requests}
    assert operations(DynamoDB) | operations(Streams) <= sent
