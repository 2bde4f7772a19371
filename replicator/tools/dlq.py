"""``replicator dlq list / show / replay / purge``: see and re-drive dead-lettered records.

Entries are read by ``dlq_entry``. Replay does not resend the old record: it
re-drives the key from the source's current state (a strongly consistent read)
through the applier (``redrive``: the normal rule, or for a Kinesis entry rule K as a
tie is settled), so an item fixed at the source replays fixed. An entry is removed
once its key settled on the target (written, or the target already holds as new);
an undecodable Kinesis entry names no key and is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from replicator.apply.applier import TargetApplier
from replicator.aws.factory import Clients
from replicator.aws.json_client import DynamoDB
from replicator.aws.retry import RetryPolicy
from replicator.aws.tables import describe
from replicator.config.schema import Config
from replicator.errors import ConfigError, RecordError
from replicator.models import Change, TargetRef
from replicator.pipeline.dlq import DeadLetterQueue
from replicator.service.run import metrics_for
from replicator.service.wiring import meta_for, selection_for
from replicator.tools.deliver import by_rule_k, target_applier
from replicator.tools.dlq_entry import Entry, read_entry
from replicator.tools.redrive import UNREPLAYABLE, kinesis_redrive, stream_redrive
from replicator.tools.scan import scan_segment
from replicator.tools.select import select_pairs


@dataclass(frozen=True, slots=True)
class _Home:
    clients: Clients
    client: DynamoDB  # in the source region, where the DLQ table is


@contextlib.asynccontextmanager
async def _home(config: Config) -> AsyncIterator[_Home]:
    clients = Clients.for_config(config)
    try:
        yield _Home(clients, await clients.json("dynamodb", config.source_region))
    finally:
        await clients.aclose()


async def entries(client: DynamoDB, table: str) -> AsyncIterator[Entry]:
    if await describe(client, table) is None:
        return  # created with the first dead letter: nothing was dead-lettered yet
    async for page in scan_segment(client, table, 0, 1, consistent=True):
        for row in page.items:
            yield read_entry(row)


async def list_entries(config: Config, *, pair: str | None = None) -> list[Entry]:
    """Every entry (of the pair's source table), oldest last failure first."""
    tables = {p.source_table for p in select_pairs(config, pair)}
    async with _home(config) as home:
        found = [e async for e in entries(home.client, config.dlq_table)]
    found = [e for e in found if e.source_table in tables]
    return sorted(found, key=lambda e: (e.last_failed_at, e.id))


async def find(config: Config, entry_id: str) -> Entry:
    for entry in await list_entries(config):
        if entry.id == entry_id:
            return entry
    raise ConfigError(f"no DLQ entry has id {entry_id} — `replicator dlq list` shows the ids")


@dataclass
class ReplayResult:
    settled: list[Entry]
    failed: list[tuple[Entry, str]]


class _NotingSink:
    """Passes a dead letter on to the DLQ (it overwrites the entry) and notes the reason."""

    def __init__(self, dlq: DeadLetterQueue) -> None:
        self._dlq = dlq
        self.reasons: list[str] = []

    async def put(
        self,
        *,
        source_table: str,
        target: TargetRef,
        record: dict[str, Any],
        reason: str,
        recreate: bool = False,
    ) -> None:
        self.reasons.append(reason)
        await self._dlq.put(
            source_table=source_table,
            target=target,
            record=record,
            reason=reason,
            recreate=recreate,
        )


async def replay(config: Config, *, ids: list[str] | None = None) -> ReplayResult:
    """Re-drive each entry (the given ids, or all) from the source's current state."""
    chosen = await list_entries(config)
    if ids is not None:
        missing = set(ids) - {e.id for e in chosen}
        if missing:
            raise ConfigError(f"no DLQ entry has id {', '.join(sorted(missing))}")
        chosen = [e for e in chosen if e.id in ids]
    pairs = {p.source_table: p for p in config.pairs}
    result = ReplayResult([], [])
    metrics = metrics_for(config)
    appliers: dict[tuple[str, TargetRef, bool], TargetApplier] = {}
    try:
        async with _home(config) as home:
            sink = _NotingSink(DeadLetterQueue(home.client, config.dlq_table))
            for entry in chosen:
                pair = pairs.get(entry.source_table)
                if pair is None or entry.keys is None:
                    why = "no pair in the config" if pair is None else "the entry names no key"
                    result.failed.append((entry, UNREPLAYABLE if entry.undecodable else why))
                    continue
                # Rule K is one-way; active-active orders Kinesis changes by version (§4c).
                settle = entry.kinesis and by_rule_k(config, pair)
                meta, here = meta_for(config, pair), config.source_region
                try:
                    if settle:
                        change: Change | None = kinesis_redrive(entry, meta=meta, here=here)
                    else:
                        change = await stream_redrive(home.client, entry, meta=meta, here=here)
                except RecordError as exc:
                    result.failed.append((entry, f"still not replicable at the source: {exc}"))
                    continue
                if change is not None and not settle:  # settling filters what it reads
                    change = selection_for(config, pair).filtered(change)
                route = (entry.source_table, entry.target, settle)
                if route not in appliers:
                    appliers[route] = await target_applier(
                        config,
                        pair,
                        entry.target,
                        home.clients,
                        dlq=sink,
                        metrics=metrics,
                        stop=asyncio.Event(),
                        settle=settle,
                    )
                before = len(sink.reasons)
                if change is not None:
                    await appliers[route].apply(entry.source_table, {change.key: [change]})
                if len(sink.reasons) > before:  # dead-lettered again: the entry stays
                    result.failed.append((entry, sink.reasons[-1]))
                    continue
                await _delete(home.client, config.dlq_table, entry)
                result.settled.append(entry)
    finally:
        metrics.shutdown()
    return result


async def purge(config: Config, *, older_than: float, now: Callable[[], float] = time.time) -> int:
    """Delete entries whose last failure is older than ``older_than`` seconds."""
    cutoff = now() - older_than
    removed = 0
    async with _home(config) as home:
        async for entry in entries(home.client, config.dlq_table):
            if entry.last_failed_at < cutoff:
                await _delete(home.client, config.dlq_table, entry)
                removed += 1
    return removed


async def _delete(client: DynamoDB, table: str, entry: Entry) -> None:
    key = {"pk": {"S": entry.pk}, "sk": {"S": entry.sk}}
    await RetryPolicy().call(
        "DLQ delete", client.region, lambda: client.delete_item(TableName=table, Key=key)
    )
