"""Benchmark 3's baseline: the stream handler as Lambda tutorials write it.

For each record of the event, one blocking boto3 call: ``put_item`` of the NewImage, or
``delete_item`` of the Keys. No concurrency, no condition, no retries of its own. It
reads the same backlog as the pipeline (the first records of the same stream) and
writes through the same proxy, so only the way of writing differs.
"""

from __future__ import annotations

import time
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer

from bench.env import SOURCE_REGION, TARGET_REGION, Backend
from replicator.aws.factory import Clients
from replicator.stream.source import DynamoDBStreamSource

LAMBDA_BATCH_SIZE = 100  # the event source mapping's default


async def first_records(
    backend: Backend, table: str, count: int
) -> tuple[list[dict[str, Any]], float]:
    """The first ``count`` stream records of ``table``, as a Lambda event would carry them,
    and the seconds GetRecords took to serve them: the source's own rate, one reader, with
    nothing else to do."""
    clients = Clients(backend.endpoints)
    try:
        source = DynamoDBStreamSource(
            await clients.json("dynamodb", SOURCE_REGION),
            await clients.json("dynamodbstreams", SOURCE_REGION),
        )
        arn = await source.stream_arn(table)
        (shard, *_) = await source.shards(arn)
        started = time.perf_counter()
        iterator: str | None = await source.iterator(arn, shard.shard_id, after=None)
        records: list[dict[str, Any]] = []
        for _ in range(count // 100 + 10):  # bounded: moto never ends an open shard
            if iterator is None or len(records) >= count:
                break
            page = await source.get_records(iterator, limit=min(1000, count - len(records)))
            records.extend(page.records)
            iterator = page.next_iterator
        return records[:count], time.perf_counter() - started
    finally:
        await clients.aclose()


def naive_handler_rate(endpoint: str, table_name: str, records: list[dict[str, Any]]) -> float:
    """Records/s of the tutorial handler: for each record, one blocking boto3 call."""
    table = boto3.resource("dynamodb", region_name=TARGET_REGION, endpoint_url=endpoint).Table(
        table_name
    )
    deserializer = TypeDeserializer()

    def handler(event: dict[str, Any], context: object) -> None:
        for record in event["Records"]:
            image = record["dynamodb"]
            if record["eventName"] == "REMOVE":
                key = {k: deserializer.deserialize(v) for k, v in image["Keys"].items()}
                table.delete_item(Key=key)
            else:
                item = {k: deserializer.deserialize(v) for k, v in image["NewImage"].items()}
                table.put_item(Item=item)

    started = time.perf_counter()
    for first in range(0, len(records), LAMBDA_BATCH_SIZE):
        handler({"Records": records[first : first + LAMBDA_BATCH_SIZE]}, None)
    return len(records) / (time.perf_counter() - started)
