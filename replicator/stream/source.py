"""Our small interface to a table's stream, and its DynamoDB Streams implementation.

Everything above this module (readers, pipeline, tests) talks to ``StreamSource``;
tests and benchmarks use ``replicator.stream.fake.FakeStream`` because the embedded
backend has no splits, no iterator expiry and no trimming (DESIGN §8).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from replicator.aws.classify import classify
from replicator.aws.json_client import DynamoDB, Streams
from replicator.errors import ResourceNotFound

TRIM_HORIZON = "TRIM_HORIZON"
AFTER_SEQUENCE_NUMBER = "AFTER_SEQUENCE_NUMBER"
MAX_RECORDS_PER_CALL = 1000


@dataclass(frozen=True, slots=True)
class Shard:
    """One shard of a stream; closed (split or retired) once ``ending_sequence`` is set."""

    shard_id: str
    parent_id: str | None
    starting_sequence: str
    ending_sequence: str | None = None

    @property
    def closed(self) -> bool:
        return self.ending_sequence is not None


@dataclass(frozen=True, slots=True)
class Page:
    """One GetRecords answer; ``next_iterator`` is None once a closed shard is fully read."""

    records: list[dict[str, Any]]
    next_iterator: str | None
    millis_behind_latest: int | None = None  # Kinesis: how far this page is from the tip


@dataclass(frozen=True, slots=True)
class Reading:
    """How a kind of stream is read: the defaults are DynamoDB Streams'."""

    # Parents before children: the stream rule needs a key's records in write order.
    parents_first: bool = True
    # How long the stream keeps a record: a checkpoint older than this may have lost data.
    retention_seconds: float = 24 * 3600.0
    # Least seconds between two GetRecords of one shard (a limit shared by every consumer).
    min_interval: float = 0.0


DYNAMODB_STREAMS = Reading()


class StreamSource(Protocol):
    async def stream_arn(self, table: str) -> str:
        """The table's latest stream; ``ResourceNotFound`` if it has none."""
        ...

    async def shards(self, stream_arn: str) -> list[Shard]:
        """Every shard the stream still lists (closed ones age out after 24 h)."""
        ...

    async def iterator(self, stream_arn: str, shard_id: str, *, after: str | None) -> str:
        """An iterator just after sequence ``after``, or at the trim horizon when None."""
        ...

    async def get_records(self, iterator: str, *, limit: int = MAX_RECORDS_PER_CALL) -> Page: ...


class DynamoDBStreamSource:
    """``StreamSource`` over the DynamoDB and Streams clients of ``Clients.json``."""

    def __init__(self, dynamodb_client: DynamoDB, streams_client: Streams) -> None:
        self._dynamodb = dynamodb_client
        self._streams = streams_client

    async def stream_arn(self, table: str) -> str:
        try:
            answer = await self._dynamodb.describe_table(TableName=table)
        except Exception as exc:
            raise classify(exc) from exc
        description = answer["Table"]
        arn = description.get("LatestStreamArn")
        enabled = description.get("StreamSpecification", {}).get("StreamEnabled", False)
        if not arn or not enabled:
            raise ResourceNotFound(
                f"table {table!r} has no stream: enable it with StreamViewType NEW_AND_OLD_IMAGES",
                code="NoStream",
            )
        return str(arn)

    async def shards(self, stream_arn: str) -> list[Shard]:
        found: list[Shard] = []
        request: dict[str, Any] = {"StreamArn": stream_arn}
        while True:
            try:
                answer = await self._streams.describe_stream(**request)
            except Exception as exc:
                raise classify(exc) from exc
            description = answer["StreamDescription"]
            found.extend(shard_of(raw) for raw in description.get("Shards", []))
            last = description.get("LastEvaluatedShardId")
            if not last:
                return found
            request["ExclusiveStartShardId"] = last

    async def iterator(self, stream_arn: str, shard_id: str, *, after: str | None) -> str:
        request: dict[str, Any] = {"StreamArn": stream_arn, "ShardId": shard_id}
        if after is None:
            request["ShardIteratorType"] = TRIM_HORIZON
        else:
            request["ShardIteratorType"] = AFTER_SEQUENCE_NUMBER
            request["SequenceNumber"] = after
        try:
            answer = await self._streams.get_shard_iterator(**request)
        except Exception as exc:
            raise classify(exc) from exc
        return str(answer["ShardIterator"])

    async def get_records(self, iterator: str, *, limit: int = MAX_RECORDS_PER_CALL) -> Page:
        try:
            answer = await self._streams.get_records(ShardIterator=iterator, Limit=limit)
        except Exception as exc:
            raise classify(exc) from exc
        records = list(answer.get("Records", []))
        return Page(records=records, next_iterator=answer.get("NextShardIterator"))


def shard_of(raw: dict[str, Any]) -> Shard:
    """A shard as DescribeStream (DynamoDB Streams) and ListShards (Kinesis) spell it."""
    numbers = raw.get("SequenceNumberRange", {})
    return Shard(
        shard_id=raw["ShardId"],
        parent_id=raw.get("ParentShardId") or None,
        starting_sequence=str(numbers.get("StartingSequenceNumber", "")),
        ending_sequence=numbers.get("EndingSequenceNumber") or None,
    )
