"""The configured source tables of a Lambda function, and which of them a batch feeds.

A DynamoDB stream belongs to one table: its batch goes to that table's pair. A Kinesis
data stream may carry several tables (DESIGN §4c): its batch goes to every pair whose
``kinesis_stream`` names it, and each takes its own table's records. A batch no pair
takes, or a table's DynamoDB stream while its pair reads Kinesis, is a wiring mistake
(``ConfigError``): applying it would mix two orders on one target.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from replicator.apply.applier import ChangeWriter, DeadLetterSink
from replicator.aws.factory import Clients
from replicator.aws.retry import RetryPolicy
from replicator.aws.tables import CONTROL_KEY, ensure_table
from replicator.config.schema import Config, Pair
from replicator.errors import ConfigError
from replicator.lambda_mode.event import KinesisBatch, StreamBatch
from replicator.models import Meta, TargetRef
from replicator.pipeline.dlq import DeadLetterQueue
from replicator.service.kinesis import check_kinesis_pair
from replicator.service.startup import targets_of
from replicator.service.wiring import conflict_feed, meta_for, target_writer
from replicator.telemetry.metrics import Metrics

WriterSeam = Callable[[TargetRef, ChangeWriter], ChangeWriter]
"""Wraps each target's writer (fault injection in tests)."""


@dataclass(frozen=True, slots=True)
class Source:
    """A configured source table, ready to apply batches to its targets."""

    pair: Pair
    meta: Meta
    writers: dict[TargetRef, ChangeWriter]
    local: TargetRef | None
    dlq: DeadLetterSink


async def build_sources(
    config: Config,
    clients: Clients,
    metrics: Metrics,
    *,
    seam: WriterSeam | None,
    stop: asyncio.Event,
) -> dict[str, Source]:
    """Every pair's writers and the region's DLQ (checked to exist), by source table.

    A Kinesis pair's stream is checked as ``replicator run`` checks it: a tombstone TTL not
    longer than its retention is a ``ConfigError`` at the cold start, before any write.
    """
    for pair in config.pairs:
        if pair.kinesis_stream is not None:
            await check_kinesis_pair(config, clients, pair, retry=RetryPolicy(stop=stop))
    home = await clients.json("dynamodb", config.source_region)
    await ensure_table(home, config.dlq_table, CONTROL_KEY, retry=RetryPolicy(stop=stop))
    dlq = DeadLetterQueue(home, config.dlq_table)
    conflicts = conflict_feed(config, home, metrics)
    if conflicts is not None:
        await ensure_table(home, conflicts.table, CONTROL_KEY, retry=RetryPolicy(stop=stop))
    sources = {}
    for pair in config.pairs:
        targets, local = targets_of(config, pair)
        writers: dict[TargetRef, ChangeWriter] = {}
        for target in targets:
            writer = await target_writer(
                config, pair, target, clients, metrics, local=local, conflicts=conflicts
            )
            writers[target] = seam(target, writer) if seam else writer
        sources[pair.source_table] = Source(pair, meta_for(config, pair), writers, local, dlq)
    return sources


def check_region(config: Config, batch: StreamBatch | KinesisBatch) -> None:
    if batch.region != config.source_region:
        raise ConfigError(
            f"the stream {batch.stream_arn} is in {batch.region} but source_region is "
            f"{config.source_region}: deploy one function per source region"
        )


def sources_of(sources: dict[str, Source], batch: StreamBatch | KinesisBatch) -> list[Source]:
    """The sources ``batch`` feeds; ``ConfigError`` when the mapping is wired wrong."""
    if isinstance(batch, KinesisBatch):
        reading = [s for s in sources.values() if reads(s.pair, batch)]
        if not reading:
            raise ConfigError(
                f"Kinesis stream {batch.stream!r} ({batch.stream_arn}) is no pair's "
                f"kinesis_stream in replicator.yaml: set kinesis_stream: {batch.stream} on "
                "the pairs of the tables it carries, or remove the mapping"
            )
        return reading
    source = sources.get(batch.table)
    if source is None:
        raise ConfigError(
            f"table {batch.table!r} (stream {batch.stream_arn}) is no source_table of "
            "replicator.yaml: add a pair for it or remove the mapping"
        )
    if source.pair.kinesis_stream is not None:
        raise ConfigError(
            f"table {batch.table!r} reads Kinesis stream {source.pair.kinesis_stream!r} "
            f"(kinesis_stream), not its DynamoDB stream {batch.stream_arn}: map the function "
            "to the Kinesis stream, or remove kinesis_stream from its pair"
        )
    return [source]


def reads(pair: Pair, batch: KinesisBatch) -> bool:
    """Whether ``pair``'s ``kinesis_stream`` (a name or an ARN) is the batch's stream."""
    return pair.kinesis_stream in (batch.stream, batch.stream_arn)
