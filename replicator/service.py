"""``replicator run``: wires the configured pairs into pipelines and runs them."""

from __future__ import annotations

import asyncio
import logging

from replicator.apply.applier import TargetApplier
from replicator.apply.writer import ConditionalWriter
from replicator.aws import Clients
from replicator.checkpoint import CheckpointStore, TargetRef
from replicator.config import Config, Pair
from replicator.dlq import DeadLetterQueue
from replicator.models import Meta
from replicator.pipeline import PairPipeline
from replicator.stream.reader import ReaderHooks
from replicator.stream.source import DynamoDBStreamSource
from replicator.tables import CONTROL_KEY, ensure_table, require_table
from replicator.telemetry.metrics import Metrics

log = logging.getLogger(__name__)


def meta_for(config: Config, pair: Pair) -> Meta:
    return Meta(version=pair.version_attribute, prefix=config.metadata_prefix)


async def build_pipelines(
    config: Config, clients: Clients, *, metrics: Metrics, stop: asyncio.Event
) -> list[PairPipeline]:
    """Check every configured table, create the control and DLQ tables, build pipelines."""
    home = await clients.get("dynamodb", config.source_region)
    await ensure_table(home, config.control_table, CONTROL_KEY)
    await ensure_table(home, config.dlq_table, CONTROL_KEY)
    checkpoints = CheckpointStore(home, config.control_table)
    dlq = DeadLetterQueue(home, config.dlq_table)
    source = DynamoDBStreamSource(home, await clients.get("dynamodbstreams", config.source_region))
    hooks = ReaderHooks(
        on_get_records=lambda: None,
        on_retry=metrics.retried,
        on_trimmed=lambda shard_id, detail: metrics.trimmed("", shard_id),
    )
    pipelines = []
    for pair in config.pairs:
        await require_table(home, pair.source_table, config.source_region, stream=True)
        meta = meta_for(config, pair)
        appliers = []
        for target in pair.targets:
            client = await clients.get("dynamodb", target.region)
            await require_table(client, target.table, target.region)
            writer = ConditionalWriter(
                client,
                target.table,
                region=target.region,
                meta=meta,
                mode=config.mode,
                tombstone_ttl_seconds=pair.tombstone_ttl_seconds,
            )
            appliers.append(
                TargetApplier(
                    writer,
                    dlq,
                    target=TargetRef(target.region, target.table),
                    metrics=metrics,
                    max_concurrency=pair.max_concurrency,
                    max_writes_per_second=pair.max_writes_per_second,
                    stop=stop,
                )
            )
        pipelines.append(
            PairPipeline(
                source_table=pair.source_table,
                region=config.source_region,
                meta=meta,
                source=source,
                appliers=appliers,
                checkpoints=checkpoints,
                metrics=metrics,
                stop=stop,
                hooks=hooks,
            )
        )
    return pipelines


async def run_service(config: Config, *, stop: asyncio.Event, metrics: Metrics) -> None:
    """Replicate until ``stop`` is set, then drain, checkpoint and return."""
    clients = Clients(config.endpoints)
    try:
        pipelines = await build_pipelines(config, clients, metrics=metrics, stop=stop)
        log.info("replicating %d table(s) from %s", len(pipelines), config.source_region)
        async with asyncio.TaskGroup() as group:
            for pipeline in pipelines:
                group.create_task(pipeline.run())
        log.info("stopped: every lane drained and checkpointed")
    finally:
        await clients.aclose()
