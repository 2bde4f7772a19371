"""``StreamSource`` over a Kinesis data stream that a table streams its changes to (DESIGN §4c).

Each GetRecords record is handed on in the shape of a record of a Lambda Kinesis event
(``eventID`` ``<shardId>:<sequenceNumber>``, ``kinesis.data`` still base64 text), so
container and Lambda mode decode the same thing. An iterator handed out here carries its
shard id in front of Kinesis's own, because a record's eventID names its shard and
GetRecords' answer does not.

Kinesis allows five GetRecords per shard per second, shared by every consumer of the
stream: ``READING`` paces each shard's reader. Rule K does not need the stream's order,
so every shard is read at once, children without waiting for their parents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from replicator.aws.classify import classify
from replicator.aws.json_client import Kinesis
from replicator.errors import ResourceNotFound
from replicator.stream.positions import time_of
from replicator.stream.source import MAX_RECORDS_PER_CALL, Page, Reading, Shard, shard_of

GET_RECORDS_INTERVAL_SECONDS = 0.2  # 5 calls per second per shard, Kinesis's limit
_SHARD_MARK = " "  # shard ids and Kinesis iterators hold no space


@dataclass(frozen=True, slots=True)
class StreamSummary:
    """What DescribeStreamSummary says of the stream."""

    name: str
    arn: str
    retention_hours: int
    status: str

    @property
    def region(self) -> str:
        return self.arn.split(":")[3]

    def reading(self, *, readers: int = 1) -> Reading:
        """How a pipeline reads the stream when ``readers`` pipelines read it (pairs of
        tables that share the stream): together within the per-shard limit."""
        return Reading(
            parents_first=False,
            retention_seconds=self.retention_hours * 3600.0,
            min_interval=GET_RECORDS_INTERVAL_SECONDS * readers,
        )


class KinesisStreamSource:
    """A stream read by its name (``config.fields.stream_name`` of a pair's setting)."""

    def __init__(self, kinesis: Kinesis, stream: str) -> None:
        self._kinesis = kinesis
        self.name = stream

    async def summary(self) -> StreamSummary:
        try:
            answer = await self._kinesis.describe_stream_summary(StreamName=self.name)
        except Exception as exc:
            error = classify(exc)
            if isinstance(error, ResourceNotFound):
                raise ResourceNotFound(
                    f"Kinesis stream {self.name!r} does not exist in {self._kinesis.region}: "
                    "create it (aws kinesis create-stream) and make it the table's Kinesis "
                    "streaming destination (aws dynamodb enable-kinesis-streaming-destination)",
                    code=error.code,
                ) from exc
            raise error from exc
        summary = answer["StreamDescriptionSummary"]
        return StreamSummary(
            name=self.name,
            arn=str(summary["StreamARN"]),
            retention_hours=int(summary["RetentionPeriodHours"]),
            status=str(summary.get("StreamStatus", "")),
        )

    async def stream_arn(self, table: str) -> str:
        return (await self.summary()).arn

    async def shards(self, stream_arn: str) -> list[Shard]:
        found: list[Shard] = []
        request: dict[str, Any] = {"StreamName": self.name}
        while True:
            try:
                answer = await self._kinesis.list_shards(**request)
            except Exception as exc:
                raise classify(exc) from exc
            found.extend(shard_of(raw) for raw in answer.get("Shards", []))
            token = answer.get("NextToken")
            if not token:
                return found
            # Kinesis refuses the stream's name beside a NextToken: the token names it.
            request = {"NextToken": token}

    async def iterator(self, stream_arn: str, shard_id: str, *, after: str | None) -> str:
        request: dict[str, Any] = {"StreamName": self.name, "ShardId": shard_id}
        if after is None:
            request["ShardIteratorType"] = "TRIM_HORIZON"
        elif (at := time_of(after)) is not None:
            # Epoch seconds: moto answered a datetime with every record of the shard.
            request["ShardIteratorType"] = "AT_TIMESTAMP"
            request["Timestamp"] = at
        else:
            request["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
            request["StartingSequenceNumber"] = after
        try:
            answer = await self._kinesis.get_shard_iterator(**request)
        except Exception as exc:
            raise classify(exc) from exc
        return f"{shard_id}{_SHARD_MARK}{answer['ShardIterator']}"

    async def get_records(self, iterator: str, *, limit: int = MAX_RECORDS_PER_CALL) -> Page:
        shard_id, _, kinesis_iterator = iterator.partition(_SHARD_MARK)
        try:
            answer = await self._kinesis.get_records(ShardIterator=kinesis_iterator, Limit=limit)
        except Exception as exc:
            raise classify(exc) from exc
        following = answer.get("NextShardIterator")
        behind = answer.get("MillisBehindLatest")
        return Page(
            records=[lambda_record(shard_id, raw) for raw in answer.get("Records", [])],
            next_iterator=f"{shard_id}{_SHARD_MARK}{following}" if following else None,
            millis_behind_latest=int(behind) if behind is not None else None,
        )


def lambda_record(shard_id: str, raw: dict[str, Any]) -> dict[str, Any]:
    """A GetRecords record as a Lambda Kinesis event holds it; ``data`` stays base64."""
    sequence = str(raw["SequenceNumber"])
    return {
        "eventSource": "aws:kinesis",
        "eventID": f"{shard_id}:{sequence}",
        "kinesis": {
            "data": raw["Data"],
            "sequenceNumber": sequence,
            "partitionKey": raw.get("PartitionKey", ""),
            "approximateArrivalTimestamp": float(raw.get("ApproximateArrivalTimestamp", 0)),
        },
    }
