"""Kinesis records as replicator receives them (DESIGN §4c), and a stream that serves them.

A record has the shape of a Lambda Kinesis event's record; its ``kinesis.data`` is the
base64 text of the JSON document DynamoDB writes for one change. ``KinesisPages`` is a
``StreamSource`` with one closed shard whose pages are scripted: the order, the
duplicates and the ties Kinesis may deliver, which moto cannot produce (it has no
streaming destination).
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from replicator.stream.fake_records import TTL_IDENTITY, wire
from replicator.stream.source import MAX_RECORDS_PER_CALL, Page, Shard

SHARD = "shardId-000000000000"
NOW_US = 1_765_000_000_000_000  # a ts in µs (December 2025)
_event_ids = itertools.count(1)


def document(
    event_name: str,
    keys: Mapping[str, Any],
    *,
    table: str,
    ts: int,
    new: Mapping[str, Any] | None = None,
    old: Mapping[str, Any] | None = None,
    event_id: str | None = None,
    precision: str | None = "MICROSECOND",
    region: str = "us-east-1",
    ttl: bool = False,
) -> dict[str, Any]:
    """The JSON document DynamoDB puts into the stream for one change (images as plain
    Python values, always holding the key, as DynamoDB's do)."""
    body: dict[str, Any] = {"ApproximateCreationDateTime": ts, "Keys": wire(keys)}
    if precision is not None:
        body["ApproximateCreationDateTimePrecision"] = precision
    if new is not None:
        body["NewImage"] = wire({**new, **keys})
    if old is not None:
        body["OldImage"] = wire({**old, **keys})
    body["SizeBytes"] = 100
    return {
        "awsRegion": region,
        "eventID": event_id or f"event-{next(_event_ids)}",
        "eventName": event_name,
        "userIdentity": dict(TTL_IDENTITY) if ttl else None,
        "recordFormat": "application/json",
        "tableName": table,
        "dynamodb": body,
        "eventSource": "aws:dynamodb",
    }


def kinesis_record(change: Mapping[str, Any] | bytes, sequence: int) -> dict[str, Any]:
    """``change`` (a document, or raw bytes for a broken one) as Kinesis delivers it."""
    data = change if isinstance(change, bytes) else json.dumps(change).encode()
    return raw_record(base64.b64encode(data).decode(), sequence)


def raw_record(data: str, sequence: int) -> dict[str, Any]:
    return {
        "eventSource": "aws:kinesis",
        "eventID": f"{SHARD}:{sequence}",
        "kinesis": {
            "data": data,
            "sequenceNumber": str(sequence),
            "partitionKey": "pk",
            "approximateArrivalTimestamp": NOW_US / 1e6,
        },
    }


def numbered(changes: Sequence[Mapping[str, Any] | bytes]) -> list[dict[str, Any]]:
    """Each change as the next record of the shard (sequence numbers from 1)."""
    return [kinesis_record(change, n) for n, change in enumerate(changes, start=1)]


class KinesisPages:
    """A ``StreamSource`` over one closed shard whose GetRecords pages are ``pages``."""

    arn = "arn:aws:kinesis:us-east-1:000000000000:stream/changes"

    def __init__(self, pages: Sequence[list[dict[str, Any]]]) -> None:
        self._pages = list(pages)
        self._last = max(int(r["kinesis"]["sequenceNumber"]) for p in pages for r in p)

    async def stream_arn(self, table: str) -> str:
        return self.arn

    async def shards(self, stream_arn: str) -> list[Shard]:
        return [Shard(SHARD, None, "1", str(self._last))]

    async def iterator(self, stream_arn: str, shard_id: str, *, after: str | None) -> str:
        assert after is None, "these tests read the shard once, from its start"
        return "0"

    async def get_records(self, iterator: str, *, limit: int = MAX_RECORDS_PER_CALL) -> Page:
        index = int(iterator)
        following = str(index + 1) if index + 1 < len(self._pages) else None
        return Page(records=self._pages[index], next_iterator=following)
