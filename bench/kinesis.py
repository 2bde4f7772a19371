"""Benchmark 13: one workload drained from a DynamoDB stream and from a Kinesis stream.

One backend, one run. The source table takes ``changes`` writes over a quarter as many
keys (INSERTs, then MODIFYs); its DynamoDB stream is the first backlog. The lab's bridge
(``replicator.demo.kinesis_bridge``) puts the same changes into a Kinesis stream of
``SHARDS`` shards as Kinesis delivers them (``DELIVERY``: any shard, duplicates, held
back, ties): the second backlog; the third is a one-shard stream holding the same records
in the order they arrived (moto gives a DynamoDB stream one shard). Three pairs, built by
``replicator run``'s wiring, drain them one after the other into three target tables
through the same proxy:

- each drain's rate: the workload's changes over the seconds until the last outcome was
  counted. The drain ends once every shard's checkpoint covers its last record (a change
  coalesced away has no outcome to count); those checkpoints follow up to a checkpoint
  interval later, a wait that grows with the shard count and is left out;
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
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.backlog import prepare, unique
from bench.drain import DEFAULT_CONCURRENCY, Drained, drain_config, drain_until
from bench.env import SOURCE_REGION, TARGET_REGION, Backend
from bench.fakes import META
from bench.kinesis_backlog import DELIVERY, Backlog, Watch, backlogs, fill_kinesis
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
STREAMS, KINESIS, ONE_SHARD = ROLES = ("streams", "kinesis", "kinesis-1")


@dataclass(frozen=True, slots=True)
class Leg:
    """One source drained into its own target table."""

    drain: Drained
    tie_reads: int
    # Until the last outcome was counted: the checkpoint that ends the drain may follow
    # up to CHECKPOINT_INTERVAL_SECONDS later, later still when several shards must save.
    seconds: float


async def drained(
    backend: Backend,
    source_table: str,
    target_table: str,
    backlog: Backlog,
    *,
    kinesis_stream: str | None,
) -> Leg:
    """The pair drained until its checkpoints cover ``backlog``."""
    config = drain_config(
        backend,
        source_table,
        target_table,
        concurrency=DEFAULT_CONCURRENCY,
        kinesis_stream=kinesis_stream,
    )
    metrics = Metrics(source_region=SOURCE_REGION)
    watch = Watch(backlog)
    try:
        where = "DynamoDB Streams" if kinesis_stream is None else f"Kinesis {kinesis_stream}"
        label = f"[13] draining {backlog.records:,} records from {where}"
        drain = await drain_until(backend, config, metrics, watch, backlog.records, label=label)
        seconds = drain.seconds - watch.wait_for_checkpoints()
        return Leg(drain, tie_reads(metrics.prometheus_text().decode()), seconds)
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
    source_table, stream, one_shard = unique("source"), unique("changes"), unique("changes-1")
    targets = {role: unique(f"target-{role}") for role in ROLES}
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
    read = await backlogs(backend, source_table, stream, one_shard=one_shard)
    backlog = dict(zip(ROLES, read, strict=True))
    read_from = {STREAMS: None, KINESIS: stream, ONE_SHARD: one_shard}
    legs = {
        role: await drained(
            backend, source_table, targets[role], backlog[role], kinesis_stream=read_from[role]
        )
        for role in ROLES
    }
    complete = all(legs[role].drain.settled >= backlog[role].records for role in ROLES)
    rate = {role: changes / legs[role].seconds for role in ROLES}
    streams, kinesis = legs[STREAMS].drain, legs[KINESIS].drain
    on_moto = backend.target == "moto"
    where = "moto target" if on_moto else "stub target"
    differing = await diverged(backend, source_table, targets) if on_moto else None
    workload = f"{changes:,} changes of {keys:,} keys, {backend.rtt * 1000:.0f} ms RTT, {where}"
    if not complete:
        workload = "timed out before the checkpoints covered the backlog; " + workload
    ties, reads = backlog[KINESIS].ties, legs[KINESIS].tie_reads
    details: dict[str, Any] = {
        "changes": changes,
        "keys": keys,
        "shards": shards,
        "delivery": dataclasses.asdict(DELIVERY),
        "bridge_counts": dict(bridged),
        "fill_seconds": filled,
        "source_read_rates": {role: backlog[role].read_rate for role in ROLES},
        "kinesis_records": backlog[KINESIS].records,
        "duplicates": backlog[KINESIS].duplicates,
        "ties": ties,
        "final_ties": backlog[KINESIS].final_ties,
        "tie_reads": {role: legs[role].tie_reads for role in (KINESIS, ONE_SHARD)},
        **{role: _figures(legs[role]) for role in ROLES},
        "diverged_keys": differing,
    }

    def read_alone(role: str) -> str:
        return f"moto serves it to one reader at {backlog[role].read_rate:,.0f} records/s"

    def after(role: str) -> str:
        return f"{_writes(legs[role].drain)}{_converged(differing, role)}"

    return [
        Result(
            BENCH,
            f"drain from DynamoDB Streams, {where}",
            rate[STREAMS],
            "records/s",
            None,
            f"{workload}; 1 shard, {read_alone(STREAMS)}; {after(STREAMS)}",
            details,
        ),
        Result(
            BENCH,
            f"drain from Kinesis, {shards} shards, {where}",
            rate[KINESIS],
            "records/s",
            None,
            f"the same changes as {backlog[KINESIS].records:,} records "
            f"({backlog[KINESIS].duplicates:,} duplicate copies, {bridged.get('held', 0):,} "
            f"held back, {ties:,} ties), put by the lab's bridge in {filled:.1f} s; "
            f"{read_alone(KINESIS)} (unpaced); {after(KINESIS)}",
        ),
        Result(
            BENCH,
            f"drain from Kinesis, 1 shard, {where}",
            rate[ONE_SHARD],
            "records/s",
            None,
            f"those records put into one shard in the order they arrived (moto gives a "
            f"DynamoDB stream one shard); {read_alone(ONE_SHARD)}; {after(ONE_SHARD)}",
        ),
        Result(
            BENCH,
            f"Kinesis / Streams, {where}",
            rate[KINESIS] / rate[STREAMS] if complete else None,
            "x",
            RATIO_GOAL,
            f"{legs[KINESIS].seconds:.1f} s vs {legs[STREAMS].seconds:.1f} s to the last outcome; "
            "drained one after the other, Streams first",
        ),
        Result(
            BENCH,
            f"Kinesis on 1 shard / Streams, {where}",
            rate[ONE_SHARD] / rate[STREAMS] if complete else None,
            "x",
            None,
            "the same shard count on both sides; drained last",
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
            f"{backlog[KINESIS].final_ties:,} of them at their key's newest ts (these must "
            f"meet; the others may be superseded first); on 1 shard {legs[ONE_SHARD].tie_reads:,}",
            unreachable="" if on_moto else "a stub target refuses no write, so no tie meets",
        ),
    ]


def _figures(leg: Leg) -> dict[str, Any]:
    drain = leg.drain
    return {
        "seconds": leg.seconds,
        "seconds_to_checkpoints": drain.seconds,
        "totals": dict(drain.totals),
        "cpu": dict(drain.cpu),
    }


def _cpu(drain: Drained) -> float:
    return drain.cpu.get(REPLICATOR, 0.0)


def _writes(drain: Drained) -> str:
    writes = sum(drain.totals[name] for name in ("applied", "superseded", "duplicate"))
    return f"{writes:,} records written (applied, superseded or duplicate)"


def _converged(differing: Mapping[str, int] | None, role: str) -> str:
    if differing is None:
        return ""
    return f"; {differing[role]:,} keys differ from the source after it"
