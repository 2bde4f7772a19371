"""Benchmark 13's backlogs: the source table's DynamoDB stream; the Kinesis stream the lab's
bridge fills from it as Kinesis delivers (``DELIVERY``); and a one-shard copy of that.

What the pipeline will read, shard by shard, is read back beforehand: its drain is over
when the checkpoints cover every shard's last record (``Watch``), and the ties and
duplicate copies in the Kinesis stream are counted from its records, not taken from the
bridge's word.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import json
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.backlog import deadline_for
from bench.drain import settled
from bench.env import SOURCE_REGION, Backend
from bench.ui import progress
from replicator.aws.factory import Clients
from replicator.aws.json_client import Kinesis
from replicator.demo.kinesis_bridge import (
    PUT_RECORDS_MAX,
    Delivery,
    KinesisBridge,
    ensure_stream,
)
from replicator.stream.kinesis import KinesisStreamSource
from replicator.stream.records import sequence_of
from replicator.stream.source import DynamoDBStreamSource, StreamSource
from replicator.telemetry.metrics import Metrics

# Ties at 5 % of a key's later changes (DESIGN's model: 2 % of writes) so that even the
# smoke test's backlog holds some; duplicates and held-back records at 10 % each.
DELIVERY = Delivery(seed=13, tie_share=0.05, random_shard=True, duplicate_share=0.1, hold_share=0.1)
POLL_SECONDS = 0.05
Shards = dict[str, list[dict[str, Any]]]  # shard id -> its records, in order


@dataclass(frozen=True, slots=True)
class Backlog:
    """A stream's records as the pipeline will read them, shard by shard."""

    sequences: Mapping[str, list[int]]  # shard id -> its records' sequence numbers, in order
    read_seconds: float  # one reader, nothing else running: the source's own rate
    ties: int = 0
    # Ties at their key's greatest ts: nothing supersedes them, so each must meet (a read).
    final_ties: int = 0
    duplicates: int = 0  # copies of a record already in the stream

    @property
    def records(self) -> int:
        return sum(map(len, self.sequences.values()))

    @property
    def read_rate(self) -> float:
        return self.records / self.read_seconds

    def checkpointed(self, metrics: Metrics) -> int:
        """Records of this backlog that the pipeline's checkpoints cover."""
        covered = 0
        for shard in metrics.status()["shards"]:
            done = self.sequences.get(shard["shard_id"], [])
            if shard["checkpoint"] and shard["checkpoint"].isdigit():
                covered += bisect.bisect_right(done, int(shard["checkpoint"]))
        return covered


@dataclass
class Watch:
    """``drain_until``'s figure of done (the records the checkpoints cover), noting meanwhile
    when the outcomes last moved and when the checkpoints first covered the backlog."""

    backlog: Backlog
    outcomes: int = -1
    moved_at: float = 0.0
    covered_at: float | None = None

    def __call__(self, metrics: Metrics) -> int:
        now = time.perf_counter()
        outcomes = settled(metrics) + metrics.total("duplicate")
        if outcomes != self.outcomes:
            self.outcomes, self.moved_at = outcomes, now
        covered = self.backlog.checkpointed(metrics)
        if covered >= self.backlog.records and self.covered_at is None:
            self.covered_at = now
        return covered

    def wait_for_checkpoints(self) -> float:
        """Seconds from the last outcome to the checkpoints that ended the drain."""
        if self.covered_at is None:
            return 0.0  # never covered: the drain timed out
        return max(0.0, self.covered_at - self.moved_at)


async def read_backlog(source: StreamSource, arn: str) -> Shards:
    """Every record of every shard up to the tip (an empty page: moto never ends a shard)."""
    found: Shards = {}
    for shard in await source.shards(arn):
        records = found[shard.shard_id] = []
        iterator: str | None = await source.iterator(arn, shard.shard_id, after=None)
        while iterator is not None:
            page = await source.get_records(iterator)
            if not page.records:
                break
            records += page.records
            iterator = page.next_iterator
    return found


def backlog_of(shards: Shards, *, kinesis: bool, read_seconds: float) -> Backlog:
    sequences = {
        shard_id: [int(sequence_of(record)) for record in records]
        for shard_id, records in shards.items()
    }
    if not kinesis:
        return Backlog(sequences, read_seconds)
    events: dict[tuple[str, str, int], set[str]] = defaultdict(set)
    records = 0
    for record in (r for rs in shards.values() for r in rs):
        document = json.loads(base64.b64decode(record["kinesis"]["data"]))
        body = document["dynamodb"]
        key = json.dumps(body["Keys"], sort_keys=True)
        events[(document["tableName"], key, body["ApproximateCreationDateTime"])].add(
            document["eventID"]
        )
        records += 1
    distinct = sum(map(len, events.values()))
    newest: dict[tuple[str, str], int] = {}
    for table, key, ts in events:
        newest[(table, key)] = max(ts, newest.get((table, key), ts))
    return Backlog(
        sequences,
        read_seconds,
        ties=distinct - len(events),
        final_ties=sum(
            len(ids) - 1 for (table, key, ts), ids in events.items() if newest[(table, key)] == ts
        ),
        duplicates=records - distinct,
    )


async def fill_kinesis(
    backend: Backend, table: str, stream: str, changes: int, *, shards: int
) -> tuple[float, Mapping[str, int]]:
    """The table's DynamoDB stream put into ``stream`` by the bridge: (seconds, its counts)."""
    clients = Clients(backend.endpoints)
    stop = asyncio.Event()
    try:
        await ensure_stream(await clients.json("kinesis", SOURCE_REGION), stream, shards=shards)
        bridge = KinesisBridge(
            clients, SOURCE_REGION, [table], stream, stop=stop, delivery=DELIVERY
        )
        with progress(f"[13] bridging {changes:,} changes into Kinesis", total=changes) as update:
            started = time.perf_counter()
            async with asyncio.TaskGroup() as group:
                group.create_task(bridge.run())
                try:
                    async with asyncio.timeout(deadline_for(changes, per_second=200)):
                        while (read := bridge.counts["changes"]) < changes:
                            update(read)
                            await asyncio.sleep(POLL_SECONDS)
                        await bridge.drained()
                finally:
                    stop.set()
            return time.perf_counter() - started, dict(bridge.counts)
    finally:
        await clients.aclose()


async def backlogs(
    backend: Backend, table: str, stream: str, *, one_shard: str
) -> tuple[Backlog, Backlog, Backlog]:
    """The DynamoDB stream's backlog, the Kinesis stream's, and ``one_shard``'s: a stream
    of one shard (as moto gives a DynamoDB stream) created here with the same records."""
    clients = Clients(backend.endpoints)
    try:
        dynamodb = await clients.json("dynamodb", SOURCE_REGION)
        streams = DynamoDBStreamSource(
            dynamodb, await clients.json("dynamodbstreams", SOURCE_REGION)
        )
        kinesis = await clients.json("kinesis", SOURCE_REGION)
        from_streams, _ = await _timed_read(streams, await streams.stream_arn(table))
        from_kinesis, shards = await _timed_read(*await _kinesis(kinesis, stream))
        await copy_into_one_shard(kinesis, shards, one_shard)
        single, _ = await _timed_read(*await _kinesis(kinesis, one_shard))
        return from_streams, from_kinesis, single
    finally:
        await clients.aclose()


async def _timed_read(source: StreamSource, arn: str) -> tuple[Backlog, Shards]:
    started = time.perf_counter()
    shards = await read_backlog(source, arn)
    seconds = time.perf_counter() - started
    kinesis = isinstance(source, KinesisStreamSource)
    return backlog_of(shards, kinesis=kinesis, read_seconds=seconds), shards


async def _kinesis(kinesis: Kinesis, stream: str) -> tuple[KinesisStreamSource, str]:
    source = KinesisStreamSource(kinesis, stream)
    return source, (await source.summary()).arn


async def copy_into_one_shard(kinesis: Kinesis, shards: Shards, stream: str) -> None:
    """``shards``' records put into a new one-shard ``stream`` in the order they arrived."""
    await ensure_stream(kinesis, stream, shards=1)
    records = sorted(
        (record["kinesis"] for records in shards.values() for record in records),
        key=lambda record: float(record["approximateArrivalTimestamp"]),
    )
    for start in range(0, len(records), PUT_RECORDS_MAX):
        entries = [
            {"Data": record["data"], "PartitionKey": record["partitionKey"]}
            for record in records[start : start + PUT_RECORDS_MAX]
        ]
        answer = await kinesis.put_records(StreamName=stream, Records=entries)
        if answer.get("FailedRecordCount"):
            raise RuntimeError(f"moto refused {answer['FailedRecordCount']} Kinesis records")
