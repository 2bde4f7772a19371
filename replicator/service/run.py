"""``replicator run``: wires the configured pairs into pipelines and runs them."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import Awaitable, Callable

from replicator.aws.backoff import pause
from replicator.aws.factory import Clients
from replicator.aws.retry import RetryPolicy
from replicator.config.fields import stream_name
from replicator.config.schema import Config, Pair
from replicator.errors import ShutdownInterrupted
from replicator.ha.fence import Fence, FencedCheckpoints, FencedWriter, send_guard
from replicator.ha.keeper import LeaseKeeper, process_owner
from replicator.ha.lease import LeaseTimes
from replicator.ha.store import LeaseStore
from replicator.pipeline.checkpoint import CheckpointStore
from replicator.pipeline.dlq import DeadLetterQueue
from replicator.pipeline.pair import PairPipeline
from replicator.service.gc_tuning import GC_THRESHOLDS
from replicator.service.kinesis import checked_summary, kinesis_source
from replicator.service.startup import (
    TargetCheck,
    concurrently,
    heartbeat_writers,
    prepare_here,
    prepare_tables,
    serve_dashboard,
    targets_of,
)
from replicator.service.tenure import end_on, replicate_under_lease, replicating
from replicator.service.wiring import (
    applier_for,
    conflict_feed,
    meta_for,
    selection_for,
    target_writer,
)
from replicator.stream.source import DYNAMODB_STREAMS, DynamoDBStreamSource, StreamSource
from replicator.telemetry.metrics import Metrics

log = logging.getLogger(__name__)


def tune_gc() -> None:
    """Collector settings for a long-running pipeline; call once start-up is done."""
    gc.freeze()  # modules and SDK models loaded at start-up are never garbage: skip them
    gc.set_threshold(*GC_THRESHOLDS)


async def build_pipelines(
    config: Config, clients: Clients, *, metrics: Metrics, stop: asyncio.Event
) -> list[PairPipeline]:
    """Check every configured table, create the control and DLQ tables, build pipelines.

    Every AWS call of the service goes through one retry policy that waits out faults
    until ``stop`` is set and reports them to ``metrics`` (readiness, counters).
    """
    retry = RetryPolicy(stop=stop, observer=metrics)
    await prepare_tables(config, clients, retry=retry)
    return [
        await build_pipeline(config, clients, pair, metrics=metrics, stop=stop, retry=retry)
        for pair in config.pairs
    ]


async def build_pipeline(
    config: Config,
    clients: Clients,
    pair: Pair,
    *,
    metrics: Metrics,
    stop: asyncio.Event,
    fence: Fence | None = None,
    retry: RetryPolicy | None = None,
    checked: Callable[[], Awaitable[bool]] | None = None,
    streams: dict[str, str] | None = None,
) -> PairPipeline:
    """One pair's pipeline; with a ``fence`` it writes and checkpoints only under the lease,
    with ``checked`` (``TargetCheck.passed``) only once the targets' check passed.

    Its AWS calls wait faults out until ``stop`` (``retry`` defaults to that policy).
    ``streams`` are the stream ARNs start-up's descriptions named, each taken by the first
    pipeline of its table: a later tenure describes the table again (its stream may differ).
    """
    retry = retry or RetryPolicy(stop=stop, observer=metrics)
    home = await clients.json("dynamodb", config.source_region)
    checkpoints = (
        FencedCheckpoints(home, config.control_table, fence, retry=retry)
        if fence
        else CheckpointStore(home, config.control_table, retry=retry)
    )
    dlq_guard = send_guard(fence, "dead-letter write") if fence else None
    dlq = DeadLetterQueue(home, config.dlq_table, retry=retry, guard=dlq_guard)
    source: StreamSource
    stream_arn = (streams or {}).pop(pair.source_table, "")
    reading = DYNAMODB_STREAMS
    if pair.kinesis_stream is None:
        streams_client = await clients.json("dynamodbstreams", config.source_region)
        source = DynamoDBStreamSource(home, streams_client)
    else:
        kinesis = source = await kinesis_source(config, clients, pair)
        summary = await checked_summary(kinesis, pair, region=config.source_region, retry=retry)
        # Each pair of a shared stream reads all of it (records of other tables skipped).
        named = [stream_name(p.kinesis_stream) for p in config.pairs if p.kinesis_stream]
        readers = named.count(kinesis.name)
        stream_arn, reading = summary.arn, summary.reading(readers=readers)
    targets, local = targets_of(config, pair)
    guard = send_guard(fence) if fence else None
    conflicts = conflict_feed(config, home, metrics, stop=stop, fence=fence)
    appliers = []
    for target in targets:
        writer = await target_writer(
            config, pair, target, clients, metrics, local=local, guard=guard, conflicts=conflicts
        )
        if fence:
            writer = FencedWriter(writer, fence, timeout=config.lease.write_timeout_seconds)
        appliers.append(
            applier_for(
                config,
                pair,
                target,
                writer=writer,
                dlq=dlq,
                metrics=metrics,
                stop=stop,
                retry=retry,
                checked=checked,
            )
        )
    return PairPipeline(
        source_table=pair.source_table,
        region=config.source_region,
        meta=meta_for(config, pair),
        source=source,
        appliers=appliers,
        checkpoints=checkpoints,
        metrics=metrics,
        stop=stop,
        local_target=local,
        retry=retry,
        stream_arn=stream_arn,
        selection=selection_for(config, pair),
        reading=reading,
    )


def metrics_for(config: Config) -> Metrics:
    heartbeat = config.heartbeat
    return Metrics(
        source_region=config.source_region,
        mode=config.mode.value,
        heartbeat_max_age=heartbeat.ready_max_age_seconds if heartbeat.enabled else None,
        lease_max_age=config.lease.duration_seconds,
    )


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

    Per source table, this process replicates only while it holds the table's lease
    and otherwise stands by (DESIGN §6). With ``web.enabled`` the dashboard,
    ``/metrics`` and the status API are served for as long as the service runs.
    """
    owner = metrics.leases.owner = process_owner()
    clients = Clients.for_config(config, agent=f"replicator-instance/{owner}")
    halt = asyncio.Event()  # ``stop``, or the targets' start-up check failed
    retry = RetryPolicy(stop=halt, observer=metrics)
    check = TargetCheck(config, clients, retry=retry)
    try:
        try:
            async with contextlib.AsyncExitStack() as stack:
                await concurrently(
                    end_on(stop, halt),
                    check.run(halt),
                    replicate_pairs(config, clients, metrics, check=check, halt=halt, retry=retry),
                    serve_dashboard(config, metrics, stack, halt, on_web_started),
                )
        finally:
            check.raise_failure()  # a failed check is why everything stopped
        log.info("stopped: every lane drained and checkpointed")
    except ShutdownInterrupted as exc:
        log.info("stopped during start-up: %s", exc)
    finally:
        await clients.aclose()


async def replicate_pairs(
    config: Config,
    clients: Clients,
    metrics: Metrics,
    *,
    check: TargetCheck,
    halt: asyncio.Event,
    retry: RetryPolicy,
) -> None:
    """This region's start-up, then each table replicated under its lease until ``halt``."""
    descriptions = await prepare_here(config, clients, retry=retry)
    check.sources_described(descriptions)
    writers = await heartbeat_writers(
        config, clients, metrics=metrics, stop=halt, descriptions=descriptions
    )
    beats = {beat.table: beat for beat in writers}
    tune_gc()
    home = await clients.json("dynamodb", config.source_region)
    store = LeaseStore(home, config.control_table, duration=config.lease.duration_seconds)
    owner = metrics.leases.owner
    streams = {
        pair.source_table: descriptions[pair.source_table].get("LatestStreamArn", "")
        for pair in config.pairs
        if pair.kinesis_stream is None
    }
    log.info(
        "%s: %d table(s) from %s, each replicated while this process holds its lease",
        owner,
        len(config.pairs),
        config.source_region,
    )
    async with asyncio.TaskGroup() as group:
        for pair in config.pairs:
            keeper = LeaseKeeper(
                store,
                pair.source_table,
                owner=owner,
                times=lease_times(config),
                on_change=functools.partial(metrics.lease, pair.source_table),
                observer=metrics,
                region=config.source_region,
            )
            build = functools.partial(
                build_pipeline,
                config,
                clients,
                pair,
                metrics=metrics,
                fence=keeper,
                checked=check.passed,
                streams=streams,
            )
            tenure = replicating(
                build,
                beats.get(pair.source_table),
                # A standby reads no shard by design: none counts as without a reader.
                on_end=functools.partial(metrics.shards_without_reader, pair.source_table, 0),
                checked=check.passed,
            )
            group.create_task(replicate_under_lease(keeper, tenure, halt))
        group.create_task(sample_history(metrics, halt))


def lease_times(config: Config) -> LeaseTimes:
    lease = config.lease
    return LeaseTimes(lease.duration_seconds, lease.write_timeout_seconds, lease.margin_seconds)
