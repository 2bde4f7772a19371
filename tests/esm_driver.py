"""A local stand-in for Lambda's DynamoDB Streams or Kinesis event source mapping (ESM).

It reads real stream records (moto, through our ``StreamSource``, or a Kinesis stream
through ``KinesisShards``, the product's reader), shapes them as the mapping delivers them (JSON:
ApproximateCreationDateTime in epoch seconds, binary as base64 text, ``eventSourceARN``
added; a Kinesis record as Lambda's ``{"eventSource": "aws:kinesis", "kinesis": {...}}``
with its data as base64 text) and invokes a function with the documented semantics of
the mapping's settings:

- ``BatchSize``: at most that many records per invocation, in shard order.
- ``FunctionResponseTypes: [ReportBatchItemFailures]``: the lowest ``itemIdentifier``
  returned is the checkpoint; records before it are done, the rest is retried. An empty
  or null identifier, or one not in the batch, fails the whole batch.
- ``BisectBatchOnFunctionError``: a batch whose invocation fails is split in two and
  each half is retried separately; splitting does not count towards the retries.
- ``MaximumRetryAttempts`` and ``MaximumRecordAgeInSeconds`` (-1: unlimited): records
  past either are discarded, and their batch's metadata (never the records) goes to
  the ``OnFailure`` destination, an SQS queue.
- ``ParallelizationFactor``: that many batches of a shard at once, records spread by
  item key (a Kinesis record: by partition key), so one key's records keep their order.

moto's stream has one shard that never closes; shards are read one after another.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from replicator.aws.json_client import Kinesis
from replicator.config.fields import stream_name
from replicator.stream.kinesis import KinesisStreamSource
from replicator.stream.source import Page, Shard

FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:replicator"
ROLE_ARN = "arn:aws:iam::123456789012:role/replicator"
KINESIS = "aws:kinesis"
RETRY_SAFETY_LIMIT = 50  # an unlimited mapping whose function never succeeds is a test bug

Function = Callable[[dict[str, Any], Any], Any]


class ShardSource(Protocol):
    """What the driver reads: ``StreamSource``'s shard calls (``KinesisShards`` has them too)."""

    async def shards(self, stream_arn: str) -> list[Shard]: ...

    async def iterator(self, stream_arn: str, shard_id: str, *, after: str | None) -> str: ...

    async def get_records(self, iterator: str) -> Page: ...


class KinesisShards:
    """A Kinesis stream read by the product's ``KinesisStreamSource``, each record with the
    fields only a Kinesis ESM adds to it (the source gives the rest in the same shape)."""

    def __init__(self, kinesis: Kinesis, region: str) -> None:
        self._kinesis = kinesis
        self._region = region

    def _source(self, stream_arn: str) -> KinesisStreamSource:
        return KinesisStreamSource(self._kinesis, stream_name(stream_arn))

    async def shards(self, stream_arn: str) -> list[Shard]:
        return await self._source(stream_arn).shards(stream_arn)

    async def iterator(self, stream_arn: str, shard_id: str, *, after: str | None) -> str:
        return await self._source(stream_arn).iterator(stream_arn, shard_id, after=after)

    async def get_records(self, iterator: str) -> Page:
        # The iterator names its shard; the stream's name is not needed to read it.
        page = await KinesisStreamSource(self._kinesis, "").get_records(iterator)
        extra = {
            "eventVersion": "1.0",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": ROLE_ARN,
            "awsRegion": self._region,
        }
        for record in page.records:
            record.update(extra)
            record["kinesis"]["kinesisSchemaVersion"] = "1.0"
        return page


@dataclass(frozen=True)
class Mapping:
    """The event source mapping's settings (defaults as AWS documents them)."""

    batch_size: int = 100
    report_batch_item_failures: bool = True
    bisect_batch_on_function_error: bool = False
    maximum_retry_attempts: int = -1
    maximum_record_age_in_seconds: int = -1
    parallelization_factor: int = 1
    on_failure_queue_url: str | None = None
    function_timeout_seconds: float = 60.0


class Context:
    """What Lambda passes as ``context``: the time left before the function's timeout."""

    function_name = "replicator"
    invoked_function_arn = FUNCTION_ARN
    memory_limit_in_mb = 512

    def __init__(self, timeout_seconds: float) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class Invocation:
    """One call of the function, for assertions."""

    records: list[dict[str, Any]]
    lane: int  # which of the shard's parallel batches (ParallelizationFactor)
    response: Any = None
    error: BaseException | None = None

    @property
    def sequence_numbers(self) -> list[str]:
        return [_seq(r) for r in self.records]


@dataclass
class EsmDriver:
    """Drives ``functions`` (one per parallel batch of a shard) from a table's stream."""

    source: ShardSource
    stream_arn: str
    functions: list[Function]
    mapping: Mapping = field(default_factory=Mapping)
    sqs: Any = None  # the OnFailure destination's client
    clock: Callable[[], float] = time.time
    invocations: list[Invocation] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)  # sequence numbers
    _after: dict[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.functions) != self.mapping.parallelization_factor:
            raise ValueError("give one function per ParallelizationFactor")

    async def drain(self) -> None:
        """Deliver every record the stream holds beyond what earlier drains delivered."""
        for shard in await self.source.shards(self.stream_arn):
            records = await self._read(shard.shard_id)
            lanes: list[list[dict[str, Any]]] = [[] for _ in self.functions]
            for record in records:
                shaped = shape(record, self.stream_arn)
                if shaped.get("eventSource") == KINESIS:
                    shaped["eventID"] = f"{shard.shard_id}:{_seq(shaped)}"
                lanes[_lane_of(shaped, len(lanes))].append(shaped)
            async with asyncio.TaskGroup() as group:
                for index, lane in enumerate(lanes):
                    group.create_task(self._consume(shard.shard_id, index, lane))

    async def _read(self, shard_id: str) -> list[dict[str, Any]]:
        after = self._after.get(shard_id)
        iterator: str | None = await self.source.iterator(self.stream_arn, shard_id, after=after)
        records: list[dict[str, Any]] = []
        while iterator is not None:
            page = await self.source.get_records(iterator)
            if not page.records:
                break
            records.extend(page.records)
            iterator = page.next_iterator
        if records:
            self._after[shard_id] = _seq(records[-1])
        return records

    async def _consume(self, shard_id: str, lane: int, records: list[dict[str, Any]]) -> None:
        position = 0
        while position < len(records):
            batch = records[position : position + self.mapping.batch_size]
            position += len(batch)
            await self._process(shard_id, lane, batch)

    async def _process(self, shard_id: str, lane: int, batch: list[dict[str, Any]]) -> None:
        """Invoke until the batch is done, bisected, or discarded."""
        retries = 0
        while batch:
            batch = await self._drop_expired(shard_id, batch, retries)
            if not batch:
                return
            failed_from = await self._invoke(lane, batch)
            if failed_from is None:
                return
            if failed_from < 0:  # the whole batch failed
                if self.mapping.bisect_batch_on_function_error and len(batch) > 1:
                    half = len(batch) // 2
                    await self._process(shard_id, lane, batch[:half])
                    await self._process(shard_id, lane, batch[half:])
                    return
            else:  # checkpoint before the first failed record, retry from it
                batch = batch[failed_from:]
            retries += 1
            limit = self.mapping.maximum_retry_attempts
            if 0 <= limit < retries:
                await self._on_failure(shard_id, batch, "RetryAttemptsExhausted", retries)
                return
            if retries > RETRY_SAFETY_LIMIT:
                raise AssertionError(f"batch from {_seq(batch[0])} retried {retries} times")

    async def _invoke(self, lane: int, batch: list[dict[str, Any]]) -> int | None:
        """None: success; an index: the first record to retry; -1: the whole batch failed."""
        call = Invocation(batch, lane)
        self.invocations.append(call)
        context = Context(self.mapping.function_timeout_seconds)
        function = self.functions[lane]
        try:
            call.response = await asyncio.to_thread(function, {"Records": batch}, context)
        except Exception as exc:
            call.error = exc
            return -1
        if not self.mapping.report_batch_item_failures or not isinstance(call.response, dict):
            return None
        failures = call.response.get("batchItemFailures") or []
        identifiers = [f.get("itemIdentifier") if isinstance(f, dict) else None for f in failures]
        if not identifiers:
            return None
        sequences = call.sequence_numbers
        if not all(i and i in sequences for i in identifiers):
            return -1
        return min(sequences.index(i) for i in identifiers)

    async def _drop_expired(
        self, shard_id: str, batch: list[dict[str, Any]], retries: int
    ) -> list[dict[str, Any]]:
        limit = self.mapping.maximum_record_age_in_seconds
        if limit < 0:
            return batch
        now = self.clock()
        expired = [r for r in batch if now - _arrival(r) > limit]
        if expired:
            await self._on_failure(shard_id, expired, "RecordAgeExceeded", retries)
        return batch[len(expired) :]

    async def _on_failure(
        self, shard_id: str, records: list[dict[str, Any]], condition: str, invokes: int
    ) -> None:
        self.discarded.extend(_seq(r) for r in records)
        if self.mapping.on_failure_queue_url is None:
            return
        await self.sqs.send_message(
            QueueUrl=self.mapping.on_failure_queue_url,
            MessageBody=json.dumps(
                failure_record(self.stream_arn, shard_id, records, condition, invokes)
            ),
        )


def failure_record(
    stream_arn: str, shard_id: str, records: list[dict[str, Any]], condition: str, invokes: int
) -> dict[str, Any]:
    """The invocation record the OnFailure destination receives: metadata, no records."""
    arrivals = [_arrival(r) for r in records]
    info = "KinesisBatchInfo" if records[0].get("eventSource") == KINESIS else "DDBStreamBatchInfo"
    return {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": FUNCTION_ARN,
            "condition": condition,
            "approximateInvokeCount": invokes,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "version": "1.0",
        "timestamp": _iso(time.time(), millis=True),
        info: {
            "shardId": shard_id,
            "startSequenceNumber": _seq(records[0]),
            "endSequenceNumber": _seq(records[-1]),
            "approximateArrivalOfFirstRecord": _iso(arrivals[0]),
            "approximateArrivalOfLastRecord": _iso(arrivals[-1]),
            "batchSize": len(records),
            "streamArn": stream_arn,
        },
    }


def shape(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """A stream record as the mapping delivers it: JSON, with the stream's ARN."""
    shaped = json.loads(json.dumps(record, default=_json_default))
    shaped["eventSourceARN"] = stream_arn
    return shaped


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dt.datetime):
        return value.timestamp()
    raise TypeError(f"{type(value).__name__} is not in a stream record")


def _lane_of(record: dict[str, Any], lanes: int) -> int:
    if record.get("eventSource") == KINESIS:
        key = record["kinesis"]["partitionKey"]
    else:
        key = json.dumps(record["dynamodb"]["Keys"], sort_keys=True, default=_json_default)
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % lanes


def _seq(record: dict[str, Any]) -> str:
    if record.get("eventSource") == KINESIS:
        return str(record["kinesis"]["sequenceNumber"])
    return str(record["dynamodb"]["SequenceNumber"])


def _arrival(record: dict[str, Any]) -> float:
    if record.get("eventSource") == KINESIS:
        return float(record["kinesis"]["approximateArrivalTimestamp"])
    return float(record["dynamodb"]["ApproximateCreationDateTime"])


def _iso(epoch: float, *, millis: bool = False) -> str:
    moment = dt.datetime.fromtimestamp(epoch, dt.UTC)
    return moment.isoformat(timespec="milliseconds" if millis else "seconds").replace("+00:00", "Z")
