"""Benchmark 13: one workload drained from a DynamoDB stream and from a Kinesis stream.

One backend, one run. The source table takes ``changes`` writes over a quarter as many
keys (INSERTs, then MODIFYs); its DynamoDB stream is the first backlog. The lab's bridge
(``replicator.demo.kinesis_bridge``) puts the same changes into a Kinesis stream of
``SHARDS`` shards as Kinesis delivers them (``DELIVERY``: any shard, duplicates, held
back, ties): the second backlog. Two pairs, built by ``replicator run``'s wiring, drain
them one after the other into two target tables through the same proxy:

- each drain's rate: the workload's changes over the seconds until every shard's
  checkpoint covers its last record (a change coalesced away has no outcome to count);
- Kinesis / Streams;
- tie reads per tie: ``replicator_kinesis_tie_reads_total`` as ``/metrics`` shows it, over
  the ties in the Kinesis backlog counted from its records (changes of one key with equal
  ts and different eventIDs). A stub target takes every write, so no tie ever meets
  there: that figure is judged on moto, where both targets are also compared with the
  source afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import dataclasses
import json
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.backlog import deadline_for, prepare, unique
from bench.drain import DEFAULT_CONCURRENCY, Drained, drain_config, drain_until
from bench.env import SOURCE_REGION, TARGET_REGION, Backend
from bench.results import Goal, Result
from bench.ui import progress
from replicator.aws.factory import Clients
from replicator.aws.json_client import DynamoDB
from replicator.demo.kinesis_bridge import Delivery, KinesisBridge, ensure_stream
from replicator.stream.kinesis import KinesisStreamSource
from replicator.stream.records import sequence_of
from replicator.stream.source import DynamoDBStreamSource, StreamSource
from replicator.telemetry.metrics import Metrics

BENCH = "13 Kinesis vs Streams"
RATIO_GOAL = Goal(">=", 0.9, "x")
TIE_GOAL = Goal("<=", 1, "reads/tie")
SHARDS = 4
WRITES_PER_KEY = 4
# Ties at 5 % of a key's later changes (DESIGN's model: 2 % of writes) so that even the
# smoke test's backlog holds some; duplicates and held-back records at 10 % each.
DELIVERY = Delivery(seed=13, tie_share=0.05, random_shard=True, duplicate_share=0.1, hold_share=0.1)
TIE_READS = "replicator_kinesis_tie_reads"
POLL_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class Backlog:
    """A stream's records as the pipeline will read them, shard by shard."""

    sequences: Mapping[str, list[int]]  # shard id -> its records' sequence numbers, in order
    ties: int = 0
    duplicates: int = 0  # copies of a record already in the stream

    @property
    def records(self) -> int:
        return sum(map(len, self.sequences.values()))

    def checkpointed(self, metrics: Metrics) -> int:
        """Records of this backlog that the pipeline's checkpoints cover."""
        covered = 0
        for shard in metrics.status()["shards"]:
            done = self.sequences.get(shard["shard_id"], [])
            if shard["checkpoint"] and shard["checkpoint"].isdigit():
                covered += bisect.bisect_right(done, int(shard["checkpoint"]))
        return covered


async def read_backlog(source: StreamSource, arn: str) -> dict[str, list[dict[str, Any]]]:
    """Every record of every shard up to the tip (an empty page: moto never ends a shard)."""
    found: dict[str, list[dict[str, Any]]] = {}
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


def backlog_of(shards: Mapping[str, list[dict[str, Any]]], *, kinesis: bool) -> Backlog:
    sequences = {
        shard_id: [int(sequence_of(record)) for record in records]
        for shard_id, records in shards.items()
    }
    if not kinesis:
        return Backlog(sequences)
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
    return Backlog(sequences, ties=distinct - len(events), duplicates=records - distinct)


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


async def backlogs(backend: Backend, table: str, stream: str) -> tuple[Backlog, Backlog]:
    """(the DynamoDB stream's backlog, the Kinesis stream's)."""
    clients = Clients(backend.endpoints)
    try:
        dynamodb = await clients.json("dynamodb", SOURCE_REGION)
        streams = DynamoDBStreamSource(
            dynamodb, await clients.json("dynamodbstreams", SOURCE_REGION)
        )
        kinesis = KinesisStreamSource(await clients.json("kinesis", SOURCE_REGION), stream)
        from_streams = await read_backlog(streams, await streams.stream_arn(table))
        from_kinesis = await read_backlog(kinesis, (await kinesis.summary()).arn)
        return backlog_of(from_streams, kinesis=False), backlog_of(from_kinesis, kinesis=True)
    finally:
        await clients.aclose()


async def drained(
    backend: Backend, source_table: str, target_table: str, backlog: Backlog, **pair: Any
) -> tuple[Drained, int]:
    """The pair drained until its checkpoints cover ``backlog``: (figures, tie reads)."""
    config = drain_config(
        backend, source_table, target_table, concurrency=DEFAULT_CONCURRENCY, **pair
    )
    metrics = Metrics(source_region=SOURCE_REGION)
    try:
        where = "Kinesis" if pair.get("kinesis_stream") else "DynamoDB Streams"
        label = f"[13] draining {backlog.records:,} records from {where}"
        drain = await drain_until(
            backend, config, metrics, backlog.checkpointed, backlog.records, label=label
        )
        return drain, tie_reads(metrics.prometheus_text().decode())
    finally:
        metrics.shutdown()


def tie_reads(exposition: str) -> int:
    """The tie-read counter's total, as a Prometheus scrape of ``/metrics`` reads it."""
    return sum(
        int(sample.value)
        for family in text_string_to_metric_families(exposition)
        if family.name == TIE_READS
        for sample in family.samples
        if sample.name == f"{TIE_READS}_total"
    )


async def diverged(
    backend: Backend, source_table: str, target_tables: Mapping[str, str]
) -> dict[str, int]:
    """Per target table (by role): its keys whose attributes (``_rep_*`` aside) differ
    from the source's."""
    clients = Clients(
        {SOURCE_REGION: backend.source_endpoint, TARGET_REGION: backend.target_endpoint}
    )
    try:
        source = await _items(await clients.json("dynamodb", SOURCE_REGION), source_table)
        target = await clients.json("dynamodb", TARGET_REGION)
        counts = {}
        for role, table in target_tables.items():
            copied = await _items(target, table)
            keys = source.keys() | copied.keys()
            counts[role] = sum(source.get(key) != copied.get(key) for key in keys)
        return counts
    finally:
        await clients.aclose()


async def _items(client: DynamoDB, table: str) -> dict[str, dict[str, Any]]:
    items: dict[str, dict[str, Any]] = {}
    request: dict[str, Any] = {"TableName": table}
    while True:
        page = await client.scan(**request)
        for item in page.get("Items", []):
            items[item["pk"]["S"]] = {k: v for k, v in item.items() if not k.startswith("_rep")}
        if not (start := page.get("LastEvaluatedKey")):
            return items
        request["ExclusiveStartKey"] = start


async def kinesis_vs_streams(
    backend: Backend, changes: int, *, shards: int = SHARDS, writes_per_key: int = WRITES_PER_KEY
) -> list[Result]:
    """Benchmark 13 on ``changes`` writes to the source table."""
    source_table, stream = unique("source"), unique("changes")
    targets = {"streams": unique("target-streams"), "kinesis": unique("target-kinesis")}
    keys = max(25, changes // writes_per_key)
    with progress(f"[13] writing {changes:,} changes", total=changes) as update:
        await prepare(
            backend,
            source_table,
            list(targets.values()),
            backlog=changes,
            keys=keys,
            on_progress=update,
        )
    filled, bridged = await fill_kinesis(backend, source_table, stream, changes, shards=shards)
    streams_backlog, kinesis_backlog = await backlogs(backend, source_table, stream)
    streams, _ = await drained(backend, source_table, targets["streams"], streams_backlog)
    kinesis, reads = await drained(
        backend, source_table, targets["kinesis"], kinesis_backlog, kinesis_stream=stream
    )
    complete = (
        streams.settled >= streams_backlog.records and kinesis.settled >= kinesis_backlog.records
    )
    streams_rate, kinesis_rate = changes / streams.seconds, changes / kinesis.seconds
    on_moto = backend.target == "moto"
    where = "moto target" if on_moto else "stub target"
    differing = await diverged(backend, source_table, targets) if on_moto else None
    workload = f"{changes:,} changes of {keys:,} keys, {backend.rtt * 1000:.0f} ms RTT, {where}"
    if not complete:
        workload = "timed out before the checkpoints covered the backlog; " + workload
    ties = kinesis_backlog.ties
    details: dict[str, Any] = {
        "changes": changes,
        "keys": keys,
        "shards": shards,
        "delivery": dataclasses.asdict(DELIVERY),
        "bridge_counts": dict(bridged),
        "fill_seconds": filled,
        "kinesis_records": kinesis_backlog.records,
        "duplicates": kinesis_backlog.duplicates,
        "ties": ties,
        "tie_reads": reads,
        "streams": _figures(streams),
        "kinesis": _figures(kinesis),
        "diverged_keys": differing,
    }
    return [
        Result(
            BENCH,
            f"drain from DynamoDB Streams, {where}",
            streams_rate,
            "records/s",
            None,
            f"{workload}; 1 shard{_converged(differing, 'streams')}",
            details,
        ),
        Result(
            BENCH,
            f"drain from Kinesis, {where}",
            kinesis_rate,
            "records/s",
            None,
            f"the same changes as {kinesis_backlog.records:,} records on {shards} shards "
            f"({kinesis_backlog.duplicates:,} duplicate copies, {bridged.get('held', 0):,} "
            f"held back, {ties:,} ties), put by the lab's bridge in {filled:.1f} s"
            f"{_converged(differing, 'kinesis')}",
        ),
        Result(
            BENCH,
            f"Kinesis / Streams, {where}",
            kinesis_rate / streams_rate if complete else None,
            "x",
            RATIO_GOAL,
            f"{kinesis.seconds:.1f} s vs {streams.seconds:.1f} s; Streams drained first",
        ),
        Result(
            BENCH,
            f"tie reads per tie, {where}",
            reads / ties if ties and complete else None,
            "reads/tie",
            TIE_GOAL,
            f"{reads:,} source reads for {ties:,} ties in the backlog",
            unreachable="" if on_moto else "a stub target refuses no write, so no tie meets",
        ),
    ]


def _figures(drain: Drained) -> dict[str, Any]:
    return {"seconds": drain.seconds, "totals": dict(drain.totals), "cpu": dict(drain.cpu)}


def _converged(differing: Mapping[str, int] | None, role: str) -> str:
    if differing is None:
        return ""
    return f"; {differing[role]:,} keys differ from the source after it"
