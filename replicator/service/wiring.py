"""What both engines build for a pair: its metadata names, selection, target writers, conflict
feed and appliers. ``replicator run`` (``service.run``) and the Lambda handler call these, so a
pair is wired the same way in either mode.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

from replicator.apply.applier import ChangeWriter, DeadLetterSink, TargetApplier
from replicator.apply.selection import Selection
from replicator.apply.ties import SourceReads
from replicator.apply.writer import ConditionalWriter, LocalWriter, regression_reporter
from replicator.aws.factory import Clients
from replicator.aws.json_client import DynamoDB
from replicator.aws.retry import RetryPolicy
from replicator.config.schema import Config, Pair
from replicator.ha.fence import Fence, send_guard
from replicator.models import Meta, Mode, TargetRef
from replicator.pipeline.conflicts import ConflictFeed
from replicator.service.startup import (
    write_client,
)
from replicator.telemetry.metrics import Metrics


def meta_for(config: Config, pair: Pair) -> Meta:
    return Meta(version=pair.version_attribute, prefix=config.metadata_prefix)


def selection_for(config: Config, pair: Pair) -> Selection:
    """What ``pair`` replicates: its filter, excluded attributes and TTL-delete policy."""
    return Selection(
        exclude=frozenset(pair.exclude_attributes),
        filter=pair.filter,
        skip_ttl_deletes=pair.ttl_deletes == "skip",
        ttl_attribute=pair.ttl_attribute,
        heartbeat_prefix=config.heartbeat.key_prefix,
    )


async def target_writer(
    config: Config,
    pair: Pair,
    target: TargetRef,
    clients: Clients,
    metrics: Metrics,
    *,
    local: TargetRef | None,
    guard: Callable[[], None] | None = None,
    conflicts: ConflictFeed | None = None,
) -> ChangeWriter:
    """The conditional writer of one target; for the local target it also heals zombies.

    ``guard`` is asked as each write is sent and aborts it by raising (``Clients.put_client``).
    ``conflicts`` (active-active) receives the writes the rule discards there.
    """
    meta = meta_for(config, pair)
    source_items = None
    if pair.kinesis_stream:  # rule K's ties are settled by the source item (DESIGN §4c)
        source_items = SourceReads(
            await clients.json("dynamodb", config.source_region),
            pair.source_table,
            on_read=functools.partial(metrics.tie_read, pair.source_table),
        )
    conditional = ConditionalWriter(
        await write_client(clients, pair, target, guard),
        target.table,
        region=target.region,
        meta=meta,
        mode=config.mode,
        tombstone_ttl_seconds=pair.tombstone_ttl_seconds,
        on_version_regression=regression_reporter(metrics, pair.source_table, target),
        selection=selection_for(config, pair),
        on_conflict=conflicts.reporter(pair.source_table, target) if conflicts else None,
        source_items=source_items,
    )
    if target != local:
        return conditional
    return LocalWriter(conditional, await clients.json("dynamodb", target.region), meta=meta)


def conflict_feed(
    config: Config,
    home: DynamoDB,
    metrics: Metrics,
    *,
    stop: asyncio.Event | None = None,
    fence: Fence | None = None,
) -> ConflictFeed | None:
    """The conflict feed in this region (active-active only: one-way has no conflicts)."""
    if config.mode is not Mode.ACTIVE_ACTIVE:
        return None
    guard = send_guard(fence, "conflict feed write") if fence else None
    return ConflictFeed(home, config.conflicts_table, metrics=metrics, stop=stop, guard=guard)


def applier_for(
    config: Config,
    pair: Pair,
    target: TargetRef,
    *,
    writer: ChangeWriter,
    dlq: DeadLetterSink,
    metrics: Metrics,
    stop: asyncio.Event,
    retry: RetryPolicy | None = None,
    checked: Callable[[], Awaitable[bool]] | None = None,
) -> TargetApplier:
    """The applier of one target; ``retry`` defaults to waiting faults out until ``stop``."""
    return TargetApplier(
        writer,
        dlq,
        target=target,
        metrics=metrics,
        max_concurrency=pair.max_concurrency,
        max_writes_per_second=pair.max_writes_per_second,
        stop=stop,
        heartbeat_prefix=config.heartbeat.key_prefix,
        retry=retry,
        checked=checked,
        mode=config.mode,
    )
