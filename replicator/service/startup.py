"""The service's start-up checks, sent all at once.

Each check is a round trip, a target's across an ocean: one after another, seven of
them were most of the time from ``replicator run`` to its first write (bench 10).
Together they cost the slowest one, and the service does not wait for the targets'
one to start: it takes its leases and reads its streams meanwhile, and only what goes
to a target waits for the check (``TargetCheck``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from replicator.apply.limit import ceiling_of
from replicator.aws.factory import Clients
from replicator.aws.json_client import DynamoDB
from replicator.aws.retry import RetryObserver, RetryPolicy
from replicator.aws.tables import CONTROL_KEY, check_table, describe, ensure_table, key_schema_of
from replicator.config.schema import Config, Pair
from replicator.errors import ConfigError, ReplicatorError
from replicator.models import Mode, TargetRef
from replicator.service.kinesis import check_kinesis_pair
from replicator.telemetry.heartbeat import HeartbeatWriter, heartbeat_key
from replicator.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

DASHBOARD_LATEST_SECONDS = 1.0

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
    config: Config, clients: Clients, *, retry: RetryPolicy | None = None
) -> dict[str, dict[str, Any]]:
    """Create the control and DLQ tables; fail on a configured table that is missing or
    (a target) keyed otherwise than its source. Returns each source table's description."""
    check = TargetCheck(config, clients, retry=retry)

    async def here() -> dict[str, dict[str, Any]]:
        descriptions = await prepare_here(config, clients, retry=retry)
        check.sources_described(descriptions)
        return descriptions

    found: list[Any] = await concurrently(here(), check.run(asyncio.Event()))
    check.raise_failure()
    descriptions: dict[str, dict[str, Any]] = found[0]
    return descriptions


async def prepare_here(
    config: Config, clients: Clients, *, retry: RetryPolicy | None = None
) -> dict[str, dict[str, Any]]:
    """This region's side: the control and DLQ tables (and, active-active, the conflicts
    table) created, each source table described and checked (it must exist and have its
    stream). Returns the sources' descriptions."""
    home = await clients.json("dynamodb", config.source_region)
    sources = [pair.source_table for pair in config.pairs]
    control = [config.control_table, config.dlq_table]
    if config.mode is Mode.ACTIVE_ACTIVE:
        control.append(config.conflicts_table)
    answers: list[Any] = await concurrently(
        *(ensure_table(home, table, CONTROL_KEY, retry=retry) for table in control),
        *(describe(home, table, retry=retry) for table in sources),
        # A Kinesis pair's stream must exist and keep records less long than tombstones.
        *(
            check_kinesis_pair(config, clients, pair, retry=retry)
            for pair in config.pairs
            if pair.kinesis_stream is not None
        ),
    )
    # A Kinesis pair's table streams to Kinesis: it needs no DynamoDB stream of its own.
    dynamodb_streams = {pair.source_table: pair.kinesis_stream is None for pair in config.pairs}
    described = {
        table: check_table(description, table, config.source_region, stream=dynamodb_streams[table])
        for table, description in zip(
            sources, answers[len(control) : len(control) + len(sources)], strict=True
        )
    }
    for pair in config.pairs:
        if pair.kinesis_stream is not None and config.mode is Mode.ACTIVE_ACTIVE:
            log.info(
                "pair %s reads Kinesis stream %s: its lost writes are not recorded in the "
                "conflict feed (not built for Kinesis sources yet)",
                pair.source_table,
                pair.kinesis_stream,
            )
    prefix = config.metadata_prefix
    excluded = {pair.source_table: pair.exclude_attributes for pair in config.pairs}
    for table, description in described.items():
        for name, _, _ in key_schema_of(description):
            if name.startswith(prefix):  # stripped from every item: all would be refused
                raise ConfigError(
                    f"table {table}'s key attribute {name!r} starts with metadata_prefix "
                    f"{prefix!r}, and metadata is not copied — set metadata_prefix to a "
                    "prefix no attribute of yours starts with (default _rep_)"
                )
            if name in excluded[table]:  # no item could be written without its key
                raise ConfigError(
                    f"pair {table}: exclude_attributes names {name!r}, a key attribute of "
                    "the table — remove it from exclude_attributes"
                )
    return described


async def write_client(
    clients: Clients, pair: Pair, target: TargetRef, guard: Callable[[], None] | None = None
) -> DynamoDB:
    """A client of a target's writes, over its pool sized to its concurrency ceiling."""
    connections = ceiling_of(pair.max_concurrency)
    return await clients.put_client(
        target.region, target.table, connections=connections, guard=guard
    )


class TargetCheck:
    """The targets' start-up check, crossing the ocean while this region's side starts.

    Each target is described through the pool its writes use, so the first write finds
    that connection open (and on AWS, its TLS handshake done). Nothing may be sent to a
    target before ``passed()``; a failed check sets the ``halt`` given to ``run`` and is
    raised by ``raise_failure()`` once the service has stopped.
    """

    def __init__(self, config: Config, clients: Clients, *, retry: RetryPolicy | None) -> None:
        self._config = config
        self._clients = clients
        self._retry = retry
        loop = asyncio.get_running_loop()
        self._sources: asyncio.Future[Mapping[str, dict[str, Any]]] = loop.create_future()
        self._outcome: asyncio.Future[None] = loop.create_future()

    def sources_described(self, descriptions: Mapping[str, dict[str, Any]]) -> None:
        """The source tables' descriptions, whose key schemas the targets must have."""
        self._sources.set_result(descriptions)

    async def run(self, halt: asyncio.Event) -> None:
        try:
            await self._check()
        except ReplicatorError as exc:
            self._outcome.set_exception(exc)
            halt.set()
        else:
            self._outcome.set_result(None)

    async def passed(self) -> bool:
        """Wait for the check; False when it failed (the service is stopping)."""
        if not self._outcome.done():
            await asyncio.wait((self._outcome,))  # wait, not await: never cancel the check
        return not self._outcome.cancelled() and self._outcome.exception() is None

    def raise_failure(self) -> None:
        """Raise what failed the check, if it failed."""
        if self._outcome.done() and not self._outcome.cancelled():
            self._outcome.result()

    async def _check(self) -> None:
        config, clients = self._config, self._clients
        targets = [
            (pair, target) for pair in config.pairs for target in targets_of(config, pair)[0]
        ]
        checks = [
            describe(await write_client(clients, pair, target), target.table, retry=self._retry)
            for pair, target in targets
        ]
        found = await concurrently(*checks)
        for (_, target), description in zip(targets, found, strict=True):
            # A missing target fails now, not once the source has answered too.
            check_table(description, target.table, target.region)
        sources = await self._sources
        for (pair, target), description in zip(targets, found, strict=True):
            schema = key_schema_of(sources[pair.source_table])
            check_table(description, target.table, target.region, key_schema=schema)


async def heartbeat_writers(
    config: Config,
    clients: Clients,
    *,
    metrics: RetryObserver | None = None,
    stop: asyncio.Event | None = None,
    descriptions: Mapping[str, dict[str, Any]] | None = None,
) -> list[HeartbeatWriter]:
    """One canary writer per source table.

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


async def serve_dashboard(
    config: Config,
    metrics: Metrics,
    stack: contextlib.AsyncExitStack,
    halt: asyncio.Event,
    on_started: Callable[[str], None] | None,
) -> None:
    """With ``web.enabled``, serve the dashboard for as long as ``stack`` is open.

    It starts once the first record is settled, or at the latest DASHBOARD_LATEST_SECONDS
    after start-up (a standby, an idle stream): loading the web server took 60 ms of
    CPU, which delayed the first write when it was done before (bench 10).
    """
    if not config.web.enabled:
        return
    waiters = {asyncio.ensure_future(metrics.settled.wait()), asyncio.ensure_future(halt.wait())}
    try:
        await asyncio.wait(
            waiters, timeout=DASHBOARD_LATEST_SECONDS, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for waiter in waiters:
            waiter.cancel()
    if halt.is_set():
        return
    from replicator.web.server import serve

    url = await stack.enter_async_context(serve(config.web, metrics))
    log.info("dashboard and /metrics on %s", url)
    if on_started:
        on_started(url)
