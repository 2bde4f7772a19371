"""The service's start-up checks, sent all at once.

Each check is a round trip, a target's across an ocean: one after another, seven of
them were most of the time from ``replicator run`` to its first write (bench 10).
Together they cost the slowest one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from replicator.aws import Clients
from replicator.checkpoint import TargetRef
from replicator.config import Config, Pair
from replicator.models import Mode
from replicator.retry import RetryObserver, RetryPolicy
from replicator.tables import CONTROL_KEY, check_table, describe, ensure_table, key_schema_of
from replicator.telemetry.heartbeat import HeartbeatWriter, heartbeat_key

log = logging.getLogger(__name__)

T = TypeVar("T")


async def concurrently(*calls: Awaitable[T]) -> list[T]:
    """Every call's result, in order; the first failure is raised as itself (not as an
    ExceptionGroup, so a ConfigError still reads as one) and the other calls are cancelled."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_awaited(call)) for call in calls]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


async def _awaited(call: Awaitable[T]) -> T:
    return await call


def targets_of(config: Config, pair: Pair) -> tuple[list[TargetRef], TargetRef | None]:
    """A pair's targets and, in active-active mode, its local target (the source table
    itself, for this region's tombstones, DESIGN §4 rule 6), which is also the last target."""
    targets = [TargetRef(t.region, t.table) for t in pair.targets]
    if config.mode is not Mode.ACTIVE_ACTIVE:
        return targets, None
    local = TargetRef(config.source_region, pair.source_table)
    return [*targets, local], local


async def prepare_tables(
    config: Config,
    clients: Clients,
    *,
    retry: RetryPolicy | None = None,
    meanwhile: Callable[[], Awaitable[object]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Create the control and DLQ tables; fail on a configured table that is missing or
    (a target) keyed otherwise than its source. Returns each source table's description.

    ``meanwhile`` is local start-up work (the dashboard) done once this region's tables
    have answered, while the targets' checks still cross the ocean.
    """
    home = await clients.json("dynamodb", config.source_region)
    sources = [pair.source_table for pair in config.pairs]
    targets = [(pair, target) for pair in config.pairs for target in targets_of(config, pair)[0]]
    target_checks = [
        describe(await clients.json("dynamodb", target.region), target.table, retry=retry)
        for _, target in targets
    ]

    async def here() -> list[Any]:
        answers = await concurrently(
            ensure_table(home, config.control_table, CONTROL_KEY, retry=retry),
            ensure_table(home, config.dlq_table, CONTROL_KEY, retry=retry),
            *(describe(home, table, retry=retry) for table in sources),
        )
        if meanwhile is not None:
            await meanwhile()
        return answers[2:]

    found, target_descriptions = await concurrently(here(), concurrently(*target_checks))
    descriptions = {
        table: check_table(description, table, config.source_region, stream=True)
        for table, description in zip(sources, found, strict=True)
    }
    for (pair, target), description in zip(targets, target_descriptions, strict=True):
        schema = key_schema_of(descriptions[pair.source_table])
        check_table(description, target.table, target.region, key_schema=schema)
    return descriptions


async def heartbeat_writers(
    config: Config,
    clients: Clients,
    *,
    metrics: RetryObserver | None = None,
    stop: asyncio.Event | None = None,
    descriptions: Mapping[str, dict[str, Any]] | None = None,
) -> list[HeartbeatWriter]:
    """One canary writer per source table whose key schema can name it.

    ``descriptions`` are the source tables' (``prepare_tables``); without them each is
    described again.
    """
    if not config.heartbeat.enabled:
        return []
    retry = RetryPolicy(stop=stop, observer=metrics)
    home = await clients.json("dynamodb", config.source_region)
    writers: list[HeartbeatWriter] = []
    for pair in config.pairs:
        known = (descriptions or {}).get(pair.source_table)
        description = known or await describe(home, pair.source_table, retry=retry)
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
                retry=retry,
            )
        )
    return writers
