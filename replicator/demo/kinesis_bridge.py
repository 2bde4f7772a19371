"""The lab's bridge from a table's DynamoDB stream to a Kinesis data stream (DESIGN §4c, §8).

moto implements Kinesis but not DynamoDB's Kinesis streaming destination, so tests, the
demo and chaos put the changes there themselves: ``KinesisBridge`` reads the DynamoDB
streams of source tables (every shard, parents first, through ``DynamoDBStreamSource``
and ``ShardReader``) and puts each change into one Kinesis stream as the JSON document
DynamoDB writes, delivered as ``demo.kinesis_delivery.Delivery`` says. ``replicator run``
never uses it.

    stop = asyncio.Event()
    bridge = KinesisBridge(clients, "us-east-1", ["orders"], "orders-changes", stop=stop)
    async with asyncio.TaskGroup() as group:
        group.create_task(bridge.run())
        ...  # write to the table
        await bridge.drained()  # every change written so far is in the stream
        stop.set()
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import itertools
import random
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from replicator.aws.backoff import Backoff, pause
from replicator.aws.factory import Clients
from replicator.aws.json_client import Kinesis
from replicator.aws.retry import RetryPolicy
from replicator.config.fields import stream_name
from replicator.demo.kinesis_delivery import Delivery, Put, Schedule, Stamper
from replicator.demo.kinesis_progress import Progress, Reading, Watched
from replicator.demo.kinesis_stream import (
    document,
    encode,
    ensure_stream,
    foreign_document,
    item_name,
)
from replicator.errors import AwsError, ShutdownInterrupted
from replicator.stream.lineage import ready_shards
from replicator.stream.reader import ShardReader
from replicator.stream.source import DynamoDBStreamSource, StreamSource

__all__ = ["Delivery", "KinesisBridge", "ensure_stream"]

# PutRecords takes 500 records and 5 MiB a call; the margin covers the request's JSON.
PUT_RECORDS_MAX = 500
PUT_RECORDS_MAX_BYTES = 4 * 1024 * 1024
GIVE_UP_AFTER_SECONDS = 30.0
DRAIN_TIMEOUT_SECONDS = 10.0
# New shards (a split) are looked for this often; moto never splits.
SHARD_SYNC_SECONDS = 1.0
IDLE_BACKOFF = Backoff(base=0.02, cap=0.1)


class KinesisBridge:
    """Puts every change of ``tables`` (their DynamoDB streams in ``region``) into ``stream``.

    Each change is stamped (``Stamper``) as it is read, in stream order, and put as
    ``Schedule`` orders it. What waits (held records, later copies) is put once every
    shard has been idle for ``delivery.linger`` seconds, or by ``drained``. An AWS call
    failing for ``give_up_after`` seconds ends ``run`` with ``GaveUp``.
    """

    def __init__(
        self,
        clients: Clients,
        region: str,
        tables: Sequence[str],
        stream: str,
        *,
        stop: asyncio.Event,
        delivery: Delivery | None = None,
        give_up_after: float = GIVE_UP_AFTER_SECONDS,
    ) -> None:
        self._clients = clients
        self._region = region
        self._tables = list(tables)
        self._stream = stream_name(stream)
        self._stop = stop
        self._delivery = delivery = delivery or Delivery()
        self._retry = RetryPolicy(stop=stop, give_up_after=give_up_after)
        # One generator per decision, so switching one option leaves the others' draws.
        self._stamper = Stamper(delivery.precision, delivery.tie_share, self._rng("ts"))
        self._schedule = Schedule(delivery, self._rng("schedule"))
        self._shard_rng = self._rng("shard")
        self._foreign_rng = self._rng("foreign")
        self._hash_ranges: list[tuple[int, int]] = []
        self._progress = Progress(len(self._tables))
        self._put_numbers = itertools.count()
        self._counts: Counter[str] = Counter()

    @property
    def counts(self) -> Counter[str]:
        """Changes read; foreign records, ties, held, duplicate and replayed ones made; put.

        ``put`` counts each change (and foreign record) once, not its copies or replays.
        """
        return self._counts + self._schedule.counts + Counter(ties=self._stamper.ties)

    async def run(self) -> None:
        """Bridge until ``stop`` is set."""
        dynamodb = await self._clients.json("dynamodb", self._region)
        streams = await self._clients.json("dynamodbstreams", self._region)
        kinesis = await self._clients.json("kinesis", self._region)
        source = DynamoDBStreamSource(dynamodb, streams)
        try:
            self._hash_ranges = await self._open_hash_ranges(kinesis)
            async with asyncio.TaskGroup() as group:
                for table in self._tables:
                    group.create_task(self._bridge_table(source, kinesis, table, group))
                group.create_task(self._linger(kinesis))
        except* ShutdownInterrupted:
            pass  # stopped while a call was being retried

    async def drained(self) -> None:
        """Return once every change written before the call is in the stream.

        What waits (held records, later copies) is put too. ``TimeoutError`` after
        ``DRAIN_TIMEOUT_SECONDS``.
        """
        async with asyncio.timeout(DRAIN_TIMEOUT_SECONDS):
            mark = self._progress.reads
            await self._progress.wait_for(lambda: self._progress.caught_up_since(mark))
            await self._flush(await self._clients.json("kinesis", self._region))

    async def _bridge_table(
        self, source: StreamSource, kinesis: Kinesis, table: str, group: asyncio.TaskGroup
    ) -> None:
        region = self._region
        arn = await self._retry.call("DescribeTable", region, lambda: source.stream_arn(table))
        started: set[str] = set()
        finished: set[str] = set()
        while True:
            shards = await self._retry.call("DescribeStream", region, lambda: source.shards(arn))
            for shard in ready_shards(shards, finished, started):
                started.add(shard.shard_id)
                reading = Reading(table, shard.shard_id)
                self._progress.readings.append(reading)
                group.create_task(self._bridge_shard(source, kinesis, arn, reading, finished))
            self._progress.listed.add(table)
            await self._progress.changed()
            if await pause(SHARD_SYNC_SECONDS, self._stop):
                return

    async def _bridge_shard(
        self,
        source: StreamSource,
        kinesis: Kinesis,
        arn: str,
        reading: Reading,
        finished: set[str],
    ) -> None:
        reader = ShardReader(
            Watched(source, self._progress, reading),
            arn,
            reading.shard_id,
            stop=self._stop,
            idle_backoff=IDLE_BACKOFF,
            retry=self._retry,
            region=self._region,
        )
        async with contextlib.aclosing(reader.batches()) as batches:
            async for batch in batches:
                await self._put(kinesis, self._admit(reading.table, batch.records))
                if batch.shard_ended:
                    finished.add(reading.shard_id)
                    reading.ended = True
                    await self._progress.changed()

    def _admit(self, table: str, records: list[dict[str, Any]]) -> list[Put]:
        """Stamp each change in stream order and hand it to the schedule: what to put now."""
        delivery = self._delivery
        now: list[Put] = []
        for record in records:
            self._counts["changes"] += 1
            keys = record["dynamodb"]["Keys"]
            written = float(record["dynamodb"]["ApproximateCreationDateTime"])
            item = item_name(table, keys)
            ts = self._stamper.stamp(item, written)
            change = document(
                record, table=table, region=self._region, ts=ts, precision=delivery.precision
            )
            now += self._schedule.admit(Put(item, encode(change)))
            if self._foreign_rng.random() < delivery.foreign_share:
                self._counts["foreign"] += 1
                other = item_name(delivery.foreign_table, keys)
                foreign = foreign_document(
                    record,
                    table=delivery.foreign_table,
                    region=self._region,
                    ts=self._stamper.stamp(other, written),
                    precision=delivery.precision,
                    event_id=str(uuid.UUID(int=self._foreign_rng.getrandbits(128))),
                )
                now += self._schedule.admit(Put(other, encode(foreign)))
        return now

    async def _linger(self, kinesis: Kinesis) -> None:
        """Put what waits once every shard has been idle for ``delivery.linger`` seconds."""
        linger = self._delivery.linger
        while not await pause(linger / 2, self._stop):
            if self._schedule.pending and self._progress.idle_for(linger):
                await self._flush(kinesis)

    async def _flush(self, kinesis: Kinesis) -> None:
        """Put what waits, then wait for the puts already under way (they may hold some)."""
        before = set(self._progress.in_flight)
        await self._put(kinesis, self._schedule.flush())
        await self._progress.wait_for(lambda: not before & self._progress.in_flight)

    async def _put(self, kinesis: Kinesis, puts: list[Put]) -> None:
        if not puts:
            return
        number = next(self._put_numbers)
        self._progress.in_flight.add(number)
        try:
            for chunk in _chunks(puts):
                await self._put_records(kinesis, [self._entry(put) for put in chunk])
        finally:
            self._progress.in_flight.discard(number)
            await self._progress.changed()

    async def _put_records(self, kinesis: Kinesis, entries: list[dict[str, str]]) -> None:
        """One PutRecords, its refused records sent again until every one is in."""

        async def attempt() -> None:
            nonlocal entries
            answer = await kinesis.put_records(StreamName=self._stream, Records=entries)
            if not answer.get("FailedRecordCount"):
                return
            results = answer["Records"]
            entries = [
                e for e, result in zip(entries, results, strict=True) if "ErrorCode" in result
            ]
            code = next(result["ErrorCode"] for result in results if "ErrorCode" in result)
            raise AwsError(
                f"PutRecords refused {len(entries)} record(s)", code=code, retryable=True
            )

        await self._retry.call("PutRecords", self._region, attempt)

    def _entry(self, put: Put) -> dict[str, str]:
        # Like DynamoDB's, a key's partition key is the same every time, so its shard is,
        # unless ``random_shard`` sends each record to a shard drawn uniformly.
        partition_key = hashlib.blake2b(put.key.encode(), digest_size=16).hexdigest()
        entry = {"Data": put.data, "PartitionKey": partition_key}
        if self._delivery.random_shard:
            start, end = self._shard_rng.choice(self._hash_ranges)
            entry["ExplicitHashKey"] = str(self._shard_rng.randint(start, end))
        return entry

    async def _open_hash_ranges(self, kinesis: Kinesis) -> list[tuple[int, int]]:
        """The hash key range of each open shard of the stream."""
        ranges: list[tuple[int, int]] = []
        request: dict[str, str] = {"StreamName": self._stream}
        while True:
            answer = await self._retry.call(
                "ListShards", self._region, functools.partial(kinesis.list_shards, **request)
            )
            for shard in answer.get("Shards", []):
                if "EndingSequenceNumber" not in shard.get("SequenceNumberRange", {}):
                    hashes = shard["HashKeyRange"]
                    ranges.append((int(hashes["StartingHashKey"]), int(hashes["EndingHashKey"])))
            token = answer.get("NextToken")
            if not token:
                return ranges
            request = {"NextToken": token}

    def _rng(self, purpose: str) -> random.Random:
        return random.Random(f"{self._delivery.seed}-{purpose}")


def _chunks(puts: list[Put]) -> Iterator[list[Put]]:
    """Runs of puts within one PutRecords call's limits, in order."""
    chunk: list[Put] = []
    size = 0
    for put in puts:
        if chunk and (
            len(chunk) == PUT_RECORDS_MAX or size + len(put.data) > PUT_RECORDS_MAX_BYTES
        ):
            yield chunk
            chunk, size = [], 0
        chunk.append(put)
        size += len(put.data)
    if chunk:
        yield chunk
