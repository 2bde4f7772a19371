"""Benchmark 13: one workload drained from a DynamoDB stream and from a Kinesis stream.

One backend, one run. The source table takes ``changes`` writes over a quarter as many
keys (INSERTs, then MODIFYs); its DynamoDB stream is the first backlog. The lab's bridge
(``replicator.demo.kinesis_bridge``) puts the same changes into a Kinesis stream of
``SHARDS`` shards as Kinesis delivers them (``DELIVERY``: any shard, duplicates, held
back, ties): the second backlog. Two pairs, built by ``replicator run``'s wiring, drain
them one after the other into two target tables through the same proxy:

- each drain's rate: the workload's changes over the seconds until every shard's
  checkpoint covers its last record (a change coalesced away has no outcome to count);
- Kinesis / Streams, and the same for this process's CPU: on one machine the rates also
  hold moto's own cost of serving each stream, which differs (each backlog is read once
  beforehand by one reader: the notes give that rate);
- tie reads per tie: ``replicator_kinesis_tie_reads_total`` as ``/metrics`` shows it, over
  the ties in the Kinesis backlog counted from its records (changes of one key with equal
  ts and different eventIDs). A stub target takes every write, so no tie ever meets
  there: that figure is judged on moto, where both targets are also compared with the
  source afterwards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.backlog import prepare, unique
from bench.drain import DEFAULT_CONCURRENCY, Drained, drain_config, drain_until
from bench.env import SOURCE_REGION, TARGET_REGION, Backend
from bench.fakes import META
from bench.kinesis_backlog import DELIVERY, Backlog, backlogs, fill_kinesis
from bench.reads import REPLICATOR
from bench.results import Goal, Result
from bench.ui import progress
from replicator.aws.factory import Clients
from replicator.aws.json_client import DynamoDB
from replicator.models import visible_item
from replicator.telemetry.metrics import Metrics

BENCH = "13 Kinesis vs Streams"
RATIO_GOAL = Goal(">=", 0.9, "x")
TIE_GOAL = Goal("<=", 1, "reads/tie")
SHARDS = 4
WRITES_PER_KEY = 4
TIE_READS = "replicator_kinesis_tie_reads"


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
    """Per target table (by role): its keys where a reader sees another item than in the
    source (or none)."""
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
            if (seen := visible_item(item, META)) is not None:
                items[item["pk"]["S"]] = seen
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
        "source_read_rates": {
            "streams": streams_backlog.read_rate,
            "kinesis": kinesis_backlog.read_rate,
        },
        "kinesis_records": kinesis_backlog.records,
        "duplicates": kinesis_backlog.duplicates,
        "ties": ties,
        "final_ties": kinesis_backlog.final_ties,
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
            f"{workload}; {streams_backlog.records:,} records on 1 shard, which moto serves "
            f"to one reader at {streams_backlog.read_rate:,.0f}/s; {_writes(streams)}"
            f"{_converged(differing, 'streams')}",
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
            f"held back, {ties:,} ties), put by the lab's bridge in {filled:.1f} s; moto "
            f"serves them to one reader at {kinesis_backlog.read_rate:,.0f}/s (unpaced); "
            f"{_writes(kinesis)}{_converged(differing, 'kinesis')}",
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
            f"replicator CPU per change, Kinesis / Streams, {where}",
            _cpu(kinesis) / _cpu(streams) if complete and _cpu(streams) else None,
            "x",
            None,
            f"this process: {_cpu(kinesis):.2f} s vs {_cpu(streams):.2f} s of CPU for the "
            "same changes; the rates above also hold moto's own cost of serving each stream",
        ),
        Result(
            BENCH,
            f"tie reads per tie, {where}",
            reads / ties if ties and complete else None,
            "reads/tie",
            TIE_GOAL,
            f"{reads:,} source reads for {ties:,} ties in the backlog, "
            f"{kinesis_backlog.final_ties:,} of them at their key's newest ts (these must "
            "meet; the others may be superseded first)",
            unreachable="" if on_moto else "a stub target refuses no write, so no tie meets",
        ),
    ]


def _figures(drain: Drained) -> dict[str, Any]:
    return {"seconds": drain.seconds, "totals": dict(drain.totals), "cpu": dict(drain.cpu)}


def _cpu(drain: Drained) -> float:
    return drain.cpu.get(REPLICATOR, 0.0)


def _writes(drain: Drained) -> str:
    writes = sum(drain.totals[name] for name in ("applied", "superseded", "duplicate"))
    return f"{writes:,} records written (applied, superseded or duplicate)"


def _converged(differing: Mapping[str, int] | None, role: str) -> str:
    if differing is None:
        return ""
    return f"; {differing[role]:,} keys differ from the source after it"
