"""DynamoDBStreamSource and ShardReader against the embedded backend (moto server)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from replicator.aws.backoff import Backoff
from replicator.aws.factory import Clients
from replicator.aws.tables import ensure_table
from replicator.errors import AwsError, ResourceNotFound
from replicator.models import item_key
from replicator.stream.reader import ShardReader
from replicator.stream.source import DynamoDBStreamSource
from replicator.tools.scan import key_of

pytestmark = pytest.mark.timeout(30)

REGION = "us-east-1"
FAST = Backoff(base=0.01, cap=0.05)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
async def aws(endpoints: dict[str, str]) -> AsyncIterator[tuple[Any, DynamoDBStreamSource]]:
    clients = Clients(endpoints)
    try:
        dynamodb = await clients.json("dynamodb", REGION)
        streams = await clients.json("dynamodbstreams", REGION)
        yield dynamodb, DynamoDBStreamSource(dynamodb, streams)
    finally:
        await clients.aclose()


async def create_table(dynamodb: Any, name: str, *, stream: bool = True) -> None:
    await ensure_table(dynamodb, name, [("pk", "HASH", "S")], stream=stream)


async def write_history(dynamodb: Any, table: str) -> None:
    """INSERT a v1, MODIFY it to v2, INSERT b v1, REMOVE a."""
    await dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}, "v": {"N": "1"}})
    await dynamodb.update_item(
        TableName=table,
        Key={"pk": {"S": "a"}},
        UpdateExpression="SET v = :v",
        ExpressionAttributeValues={":v": {"N": "2"}},
    )
    await dynamodb.put_item(TableName=table, Item={"pk": {"S": "b"}, "v": {"N": "1"}})
    await dynamodb.delete_item(TableName=table, Key={"pk": {"S": "a"}})


async def read(
    source: DynamoDBStreamSource, arn: str, shard_id: str, count: int, after: str | None = None
) -> list[dict[str, Any]]:
    """The first ``count`` records after ``after``; moto never closes a shard, so stop there."""
    records: list[dict[str, Any]] = []
    reader = ShardReader(
        source, arn, shard_id, after=after, stop=asyncio.Event(), idle_backoff=FAST
    )
    async with contextlib.aclosing(reader.batches()) as batches:
        async for batch in batches:
            records.extend(batch.records)
            assert batch.last_sequence == records[-1]["dynamodb"]["SequenceNumber"]
            if len(records) >= count:
                break
    return records


async def test_finds_the_stream_and_its_open_shard(
    aws: tuple[Any, DynamoDBStreamSource], unique_name: str
) -> None:
    dynamodb, source = aws
    await create_table(dynamodb, unique_name)
    arn = await source.stream_arn(unique_name)
    assert f"table/{unique_name}/stream/" in arn
    [shard] = await source.shards(arn)
    assert shard.parent_id is None and shard.starting_sequence and not shard.closed


async def test_a_table_without_a_stream_is_a_clear_error(
    aws: tuple[Any, DynamoDBStreamSource], unique_name: str
) -> None:
    dynamodb, source = aws
    await create_table(dynamodb, unique_name, stream=False)
    with pytest.raises(ResourceNotFound, match="NEW_AND_OLD_IMAGES"):
        await source.stream_arn(unique_name)
    with pytest.raises(ResourceNotFound):
        await source.stream_arn(f"{unique_name}-missing")


async def test_reads_writes_updates_and_deletes_in_order_with_both_images(
    aws: tuple[Any, DynamoDBStreamSource], unique_name: str
) -> None:
    dynamodb, source = aws
    await create_table(dynamodb, unique_name)
    await write_history(dynamodb, unique_name)
    arn = await source.stream_arn(unique_name)
    [shard] = await source.shards(arn)

    records = await read(source, arn, shard.shard_id, 4)

    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY", "INSERT", "REMOVE"]
    insert_a, modify_a, insert_b, remove_a = (r["dynamodb"] for r in records)
    assert insert_a["Keys"] == {"pk": {"S": "a"}} and "OldImage" not in insert_a
    assert insert_a["NewImage"] == {"pk": {"S": "a"}, "v": {"N": "1"}}
    assert modify_a["OldImage"]["v"] == {"N": "1"} and modify_a["NewImage"]["v"] == {"N": "2"}
    assert insert_b["Keys"] == {"pk": {"S": "b"}}
    assert remove_a["OldImage"]["v"] == {"N": "2"} and "NewImage" not in remove_a
    sequences = [int(r["SequenceNumber"]) for r in (insert_a, modify_a, insert_b, remove_a)]
    assert sequences == sorted(set(sequences))
    assert all(r["ApproximateCreationDateTime"] for r in (insert_a, remove_a))


async def test_resumes_after_a_sequence_number(
    aws: tuple[Any, DynamoDBStreamSource], unique_name: str
) -> None:
    dynamodb, source = aws
    await create_table(dynamodb, unique_name)
    await write_history(dynamodb, unique_name)
    arn = await source.stream_arn(unique_name)
    [shard] = await source.shards(arn)
    first = await read(source, arn, shard.shard_id, 4)
    checkpoint = first[1]["dynamodb"]["SequenceNumber"]

    resumed = await read(source, arn, shard.shard_id, 2, after=checkpoint)

    assert [r["eventID"] for r in resumed] == [r["eventID"] for r in first[2:]]


async def test_records_written_while_reading_arrive(
    aws: tuple[Any, DynamoDBStreamSource], unique_name: str
) -> None:
    dynamodb, source = aws
    await create_table(dynamodb, unique_name)
    arn = await source.stream_arn(unique_name)
    [shard] = await source.shards(arn)
    reading = asyncio.create_task(read(source, arn, shard.shard_id, 4))
    await write_history(dynamodb, unique_name)
    records = await reading
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY", "INSERT", "REMOVE"]


async def test_a_garbage_iterator_is_a_retryable_error_on_moto(
    aws: tuple[Any, DynamoDBStreamSource],
) -> None:
    _, source = aws
    with pytest.raises(AwsError) as raised:
        await source.get_records("not-an-iterator")
    assert raised.value.retryable


async def test_a_binary_keyed_record_reads_as_the_text_a_scan_reads(
    aws: tuple[Any, DynamoDBStreamSource], unique_name: str
) -> None:
    # A key is the wire's text on every path (B as base64, nested binaries too): the key a
    # record names is the key verify, repair and dlq replay read back.
    dynamodb, source = aws
    await ensure_table(dynamodb, unique_name, [("pk", "HASH", "B")], stream=True)
    item = {
        "pk": {"B": b64(b"\x00\xffkey")},
        "blobs": {"BS": [b64(b"one"), b64(b"two")]},
        "nested": {"M": {"inner": {"L": [{"B": b64(b"deep")}]}}},
    }
    await dynamodb.put_item(TableName=unique_name, Item=item)
    arn = await source.stream_arn(unique_name)
    [shard] = await source.shards(arn)
    [record] = await read(source, arn, shard.shard_id, 1)
    [scanned] = (await dynamodb.scan(TableName=unique_name))["Items"]

    assert record["dynamodb"]["Keys"] == {"pk": scanned["pk"]} == {"pk": item["pk"]}
    assert record["dynamodb"]["NewImage"] == scanned
    assert item_key(record["dynamodb"]["Keys"]) == key_of(scanned, ["pk"])
