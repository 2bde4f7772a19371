"""``replicator run``: wires the configured pairs into pipelines and runs them."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from replicator.apply.applier import TargetApplier
from replicator.apply.limit import AUTO_CEILING
from replicator.apply.writer import ConditionalWriter
from replicator.aws import Clients
from replicator.backoff import pause
from replicator.checkpoint import CheckpointStore, TargetRef
from replicator.config import Config, Pair
from replicator.dlq import DeadLetterQueue
from replicator.models import Change, Meta, Mode
from replicator.pipeline import PairPipeline
from replicator.stream.source import DynamoDBStreamSource
from replicator.tables import CONTROL_KEY, describe, ensure_table, key_schema_of, require_table
from replicator.telemetry.heartbeat import HeartbeatWriter, heartbeat_key
from replicator.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

# The young generation is collected every 50 000 net allocations instead of 700. At
# thousands of writes a second the defaults ran the full collector every few seconds over
# every record in the lanes' queues: 130 µs of CPU per write, 40 % of it (bench 8).
# Reference counting still frees the pipeline's garbage at once; only cycles wait longer.
GC_THRESHOLDS = (50_000, 20, 20)


def tune_gc() -> None:
    """Collector settings for a long-running pipeline; call once start-up is done."""
    gc.freeze()  # modules and SDK models loaded at start-up are never garbage: skip them
    gc.set_threshold(*GC_THRESHOLDS)


def regression_reporter(
    metrics: Metrics, source_table: str, target: TargetRef
) -> Callable[[Change], None]:
    """Counts and logs an active-active re-create that lost to its own origin's tombstone."""

    def report(change: Change) -> None:
        metrics.version_regression(source_table, target)
        key = ", ".join(f"{name}={value}" for name, _, value in change.key)
        log.error(
            "version regression on %s key %s: re-created at version %s below its tombstone in "
            "%s; in active-active mode a key's version must never go back (continue from the "
            "tombstone's version)",
            source_table,
            key,
            change.incoming.version,
            target,
        )

    return report


def connections(pair: Pair) -> int:
    """The size of a target's connection pool: its concurrency ceiling."""
    return AUTO_CEILING if pair.max_concurrency == "auto" else pair.max_concurrency


def meta_for(config: Config, pair: Pair) -> Meta:
    return Meta(version=pair.version_attribute, prefix=config.metadata_prefix)


async def check_tables(config: Config, clients: Clients) -> None:
    """Create the control and DLQ tables and check every configured table, all at once.

    Concurrently: a target's check is a cross-region round trip, and start-up waits
    for the slowest one instead of their sum.
    """
    home = await clients.get("dynamodb", config.source_region)
    checks: list[Coroutine[Any, Any, object]] = [
        ensure_table(home, config.control_table, CONTROL_KEY),
        ensure_table(home, config.dlq_table, CONTROL_KEY),
    ]
    for pair in config.pairs:
        checks.append(require_table(home, pair.source_table, config.source_region, stream=True))
        for target in pair.targets:
            client = await clients.get("dynamodb", target.region)
            checks.append(require_table(client, target.table, target.region))
    try:
        async with asyncio.TaskGroup() as group:
            for check in checks:
                group.create_task(check)
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None  # one clear error, as checks made in turn gave


async def build_pipelines(
    config: Config, clients: Clients, *, metrics: Metrics, stop: asyncio.Event
) -> list[PairPipeline]:
    """Check every configured table, create the control and DLQ tables, build pipelines."""
    home = await clients.get("dynamodb", config.source_region)
    await check_tables(config, clients)
    checkpoints = CheckpointStore(home, config.control_table)
    dlq = DeadLetterQueue(home, config.dlq_table)
    source = DynamoDBStreamSource(home, await clients.get("dynamodbstreams", config.source_region))
    pipelines = []
    for pair in config.pairs:
        meta = meta_for(config, pair)
        targets = [TargetRef(t.region, t.table) for t in pair.targets]
        local = None
        if config.mode is Mode.ACTIVE_ACTIVE:
            local = TargetRef(config.source_region, pair.source_table)
            targets.append(local)
        appliers = []
        for target in targets:
            writer = ConditionalWriter(
                await clients.put_client(target.region, connections=connections(pair)),
                target.table,
                region=target.region,
                meta=meta,
                mode=config.mode,
                tombstone_ttl_seconds=pair.tombstone_ttl_seconds,
                on_version_regression=regression_reporter(metrics, pair.source_table, target),
            )
            appliers.append(
                TargetApplier(
                    writer,
                    dlq,
                    target=target,
                    metrics=metrics,
                    max_concurrency=pair.max_concurrency,
                    max_writes_per_second=pair.max_writes_per_second,
                    stop=stop,
                    heartbeat_prefix=config.heartbeat.key_prefix,
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
                local_target=local,
            )
        )
    return pipelines


def metrics_for(config: Config) -> Metrics:
    heartbeat = config.heartbeat
    return Metrics(
        source_region=config.source_region,
        mode=config.mode.value,
        heartbeat_max_age=heartbeat.ready_max_age_seconds if heartbeat.enabled else None,
    )


async def heartbeat_writers(config: Config, clients: Clients) -> list[HeartbeatWriter]:
    """One canary writer per source table whose key schema can name it."""
    if not config.heartbeat.enabled:
        return []
    home = await clients.get("dynamodb", config.source_region)
    writers = []
    for pair in config.pairs:
        description = await describe(home, pair.source_table)
        schema = key_schema_of(description) if description else []
        key = heartbeat_key(schema, config.heartbeat.key_prefix, config.source_region)
        if key is None:
            log.warning("no heartbeat for %s: its partition key is not a string", pair.source_table)
            continue
        writers.append(
            HeartbeatWriter(
                home,
                pair.source_table,
                key,
                version_attribute=pair.version_attribute,
                interval=config.heartbeat.interval_seconds,
            )
        )
    return writers


async def sample_history(metrics: Metrics, stop: asyncio.Event) -> None:
    while not await pause(1.0, stop):
        metrics.sample()


async def run_service(
    config: Config,
    *,
    stop: asyncio.Event,
    metrics: Metrics,
    on_web_started: Callable[[str], None] | None = None,
) -> None:
    """Replicate until ``stop`` is set, then drain, checkpoint and return.

    With ``web.enabled`` the dashboard, ``/metrics`` and the status API are served
    for as long as the pipelines run.
    """
    clients = Clients(config.endpoints)
    try:
        pipelines = await build_pipelines(config, clients, metrics=metrics, stop=stop)
        beats = await heartbeat_writers(config, clients)
        tune_gc()
        async with contextlib.AsyncExitStack() as stack:
            if config.web.enabled:
                from replicator.web.server import serve

                url = await stack.enter_async_context(serve(config.web, metrics))
                log.info("dashboard and /metrics on %s", url)
                if on_web_started:
                    on_web_started(url)
            log.info("replicating %d table(s) from %s", len(pipelines), config.source_region)
            async with asyncio.TaskGroup() as group:
                for pipeline in pipelines:
                    group.create_task(pipeline.run())
                for beat in beats:
                    group.create_task(beat.run(stop))
                group.create_task(sample_history(metrics, stop))
        log.info("stopped: every lane drained and checkpointed")
    finally:
        await clients.aclose()
