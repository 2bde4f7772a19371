"""The lab's Kinesis data stream: creating it, what its records hold, reading it all back.

Every call goes through the retry policy, as ``aws.tables`` does for tables.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from replicator.aws.backoff import pause
from replicator.aws.classify import error_code
from replicator.aws.json_client import Kinesis
from replicator.aws.retry import RetryPolicy
from replicator.demo.kinesis_delivery import Precision
from replicator.errors import EmbeddedBackendError, ShutdownInterrupted

ACTIVE_TIMEOUT_SECONDS = 30.0
ACTIVE_POLL_SECONDS = 0.2
READ_LIMIT = 10_000  # GetRecords' largest page
# A foreign record's NewImage names its table here, so a consumer that applied it by
# mistake leaves an attribute verify sees.
FOREIGN_MARK = "bridge_foreign"


async def ensure_stream(
    kinesis: Kinesis,
    name: str,
    *,
    shards: int,
    retry: RetryPolicy | None = None,
) -> bool:
    """Create stream ``name`` with ``shards`` shards if missing, and wait until it is ACTIVE.

    True when it was created; a stream that exists is used as it is, whatever its shards.
    """
    policy = retry or RetryPolicy()

    async def create() -> bool:
        try:
            await kinesis.create_stream(StreamName=name, ShardCount=shards)
        except ClientError as exc:
            if error_code(exc) == "ResourceInUseException":
                return False
            raise
        return True

    created = await policy.call("CreateStream", kinesis.region, create)
    deadline = time.monotonic() + ACTIVE_TIMEOUT_SECONDS
    while True:
        answer = await policy.call(
            "DescribeStreamSummary",
            kinesis.region,
            functools.partial(kinesis.describe_stream_summary, StreamName=name),
        )
        status = answer["StreamDescriptionSummary"]["StreamStatus"]
        if status == "ACTIVE":
            return created
        if time.monotonic() >= deadline:
            raise EmbeddedBackendError(
                f"Kinesis stream {name} is still {status} after {ACTIVE_TIMEOUT_SECONDS:.0f} s"
            )
        if await pause(ACTIVE_POLL_SECONDS, policy.stop or asyncio.Event()):
            raise ShutdownInterrupted(f"stopped while Kinesis stream {name} was {status}")


def document(
    record: dict[str, Any], *, table: str, region: str, ts: int, precision: Precision
) -> dict[str, Any]:
    """The Kinesis record's Data for a DynamoDB stream record, as DynamoDB writes it."""
    body = record["dynamodb"]
    inner: dict[str, Any] = {
        "ApproximateCreationDateTime": ts,
        "ApproximateCreationDateTimePrecision": precision,
        "Keys": body["Keys"],
    }
    for image in ("NewImage", "OldImage"):
        if image in body:
            inner[image] = body[image]
    inner["SizeBytes"] = body.get("SizeBytes", 0)
    return {
        "awsRegion": region,  # moto's stream says us-east-1 in every region (DESIGN §8)
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "userIdentity": _identity(record.get("userIdentity")),
        "recordFormat": "application/json",
        "tableName": table,
        "dynamodb": inner,
        "eventSource": "aws:dynamodb",
    }


def foreign_document(
    record: dict[str, Any], *, table: str, region: str, ts: int, precision: Precision, event_id: str
) -> dict[str, Any]:
    """An INSERT of ``record``'s key into another table ``table``, marked ``FOREIGN_MARK``."""
    keys = record["dynamodb"]["Keys"]
    insert = {
        "eventID": event_id,
        "eventName": "INSERT",
        "dynamodb": {"Keys": keys, "NewImage": {**keys, FOREIGN_MARK: {"S": table}}},
    }
    return document(insert, table=table, region=region, ts=ts, precision=precision)


def _identity(who: Any) -> dict[str, str] | None:
    """A Streams userIdentity (``Type``/``PrincipalId``) as Kinesis records spell it."""
    if not isinstance(who, dict):
        return None
    return {"type": who.get("Type", ""), "principalId": who.get("PrincipalId", "")}


def item_name(table: str, keys: dict[str, Any]) -> str:
    """One name per item of a table, whatever the order of its key attributes."""
    return f"{table}/{json.dumps(keys, sort_keys=True, separators=(',', ':'))}"


def encode(change: dict[str, Any]) -> str:
    """A document as a Kinesis record's Data: base64 text of its JSON."""
    return base64.b64encode(json.dumps(change, separators=(",", ":")).encode()).decode()


@dataclass(frozen=True, slots=True)
class Delivered:
    """One record in the stream: where it landed, and the document DynamoDB would have sent."""

    shard_id: str
    sequence: str
    document: dict[str, Any]


async def read_stream(
    kinesis: Kinesis, name: str, *, retry: RetryPolicy | None = None
) -> list[Delivered]:
    """Every record of every shard, from the trim horizon to the end, shard by shard."""
    policy = retry or RetryPolicy()
    region = kinesis.region
    shard_ids: list[str] = []
    request: dict[str, str] = {"StreamName": name}
    while True:
        listed = await policy.call(
            "ListShards", region, functools.partial(kinesis.list_shards, **request)
        )
        shard_ids += [shard["ShardId"] for shard in listed.get("Shards", [])]
        if not listed.get("NextToken"):
            break
        request = {"NextToken": listed["NextToken"]}
    delivered: list[Delivered] = []
    for shard_id in shard_ids:
        answer = await policy.call(
            "GetShardIterator",
            region,
            functools.partial(
                kinesis.get_shard_iterator,
                StreamName=name,
                ShardId=shard_id,
                ShardIteratorType="TRIM_HORIZON",
            ),
        )
        iterator: str | None = answer["ShardIterator"]
        while iterator:
            page = await policy.call(
                "GetRecords",
                region,
                functools.partial(kinesis.get_records, ShardIterator=iterator, Limit=READ_LIMIT),
            )
            records = page.get("Records", [])
            delivered += [
                Delivered(shard_id, record["SequenceNumber"], _document(record["Data"]))
                for record in records
            ]
            # An empty page at the tip: everything put so far has been read.
            iterator = page.get("NextShardIterator") if records else None
    return delivered


def _document(data: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(base64.b64decode(data))
    return parsed
