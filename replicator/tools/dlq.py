"""``replicator dlq list / show / replay / purge``: see and re-drive dead-lettered records.

Entries are read tolerantly: the record may be stored as JSON text or compressed
bytes, or left out (too large: then the entry's own ``keys`` name the item), and
entries of the container and the Lambda modes alike carry the target and the reason.
Replay does not resend the old record: it re-drives the key from the source's
current state (a strongly consistent read) through the applier and the normal rule,
so an item fixed at the source replays fixed. An entry is removed once its key
settled on the target (written, or the target already holds as new).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
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
from replicator.models import Change, Incoming, Meta, TargetRef, WireItem, item_key, number, pad_seq
from replicator.pipeline.dlq import DeadLetterQueue, decode_record
from replicator.service.run import metrics_for
from replicator.service.wiring import meta_for, selection_for
from replicator.tools.deliver import state_change, target_applier
from replicator.tools.scan import get_item, scan_segment
from replicator.tools.select import select_pairs


@dataclass(frozen=True, slots=True)
class Entry:
    pk: str
    sk: str
    source_table: str
    target: TargetRef
    reason: str
    first_failed_at: float
    last_failed_at: float
    attempts: int
    recreate: bool  # the write was a re-create (one-way: it supersedes its origin's state)
    sequence_number: str | None  # of the stream record; None for a backfill's
    record: dict[str, Any] | None  # None: not stored (too large), see ``keys``
    keys: WireItem | None

    @property
    def id(self) -> str:
        return hashlib.sha1(f"{self.pk}\0{self.sk}".encode()).hexdigest()[:12]

    def key_text(self) -> str:
        if not self.keys:
            return "?"
        return ", ".join(f"{n}={v}" for n, _, v in item_key(self.keys))

    def line(self) -> str:
        return (
            f"{self.id}  {self.source_table} -> {self.target}  {self.key_text()}  "
            f"first {_when(self.first_failed_at)}  last {_when(self.last_failed_at)}  "
            f"attempts {self.attempts}  {self.reason}"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source_table": self.source_table,
            "target": str(self.target),
            "keys": self.key_text(),
            "reason": self.reason,
            "first_failure": self.first_failed_at,
            "last_failure": self.last_failed_at,
            "attempts": self.attempts,
        }


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def read_entry(row: WireItem) -> Entry:
    """One DLQ row, whatever the writer's version stored (unknown attributes ignored)."""
    record = _record(row)
    body = record.get("dynamodb") if isinstance(record, dict) else None
    keys = body.get("Keys") if isinstance(body, dict) else None
    if keys is None and "keys" in row:
        keys = _json_or_map(row["keys"])
    failed = number(row.get("failed_at")) or 0
    return Entry(
        pk=row["pk"]["S"],
        sk=row["sk"]["S"],
        source_table=row.get("source_table", {}).get("S", row["pk"]["S"].split("#")[0]),
        target=TargetRef(row["target_region"]["S"], row["target_table"]["S"]),
        reason=row.get("reason", {}).get("S", ""),
        first_failed_at=float(number(row.get("first_failed_at")) or failed),
        last_failed_at=float(number(row.get("last_failed_at")) or failed),
        attempts=int(number(row.get("attempts")) or 1),
        recreate=bool(row.get("recreate", {}).get("BOOL", False)),
        sequence_number=_sequence_number(row, body),
        record=record,
        keys=keys,
    )


def _sequence_number(row: WireItem, body: dict[str, Any] | None) -> str | None:
    if body and "SequenceNumber" in body:
        return str(body["SequenceNumber"])
    stored = row.get("sequence_number", {}).get("S")
    return stored if stored and stored != "none" else None


def _record(row: WireItem) -> dict[str, Any] | None:
    if "S" in row.get("record", {}):  # entries written before records were compressed
        text: dict[str, Any] = json.loads(row["record"]["S"])
        return text
    return decode_record(row)


def _json_or_map(attribute: dict[str, Any]) -> Any:
    if "S" in attribute:
        return json.loads(attribute["S"])
    return attribute.get("M")


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
    appliers: dict[tuple[str, TargetRef], TargetApplier] = {}
    try:
        async with _home(config) as home:
            sink = _NotingSink(DeadLetterQueue(home.client, config.dlq_table))
            for entry in chosen:
                pair = pairs.get(entry.source_table)
                if pair is None or entry.keys is None:
                    why = "no pair in the config" if pair is None else "the entry names no key"
                    result.failed.append((entry, why))
                    continue
                try:
                    change = await _current(config, home.client, entry, meta_for(config, pair))
                except RecordError as exc:
                    result.failed.append((entry, f"still not replicable at the source: {exc}"))
                    continue
                if change is not None:
                    change = selection_for(config, pair).filtered(change)
                route = (entry.source_table, entry.target)
                if route not in appliers:
                    appliers[route] = await target_applier(
                        config,
                        pair,
                        entry.target,
                        home.clients,
                        dlq=sink,
                        metrics=metrics,
                        stop=asyncio.Event(),
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


async def _current(config: Config, client: DynamoDB, entry: Entry, meta: Meta) -> Change | None:
    """The entry's key as the source holds it now, placed at the entry's stream position."""
    assert entry.keys is not None
    body = (entry.record or {}).get("dynamodb") or {}
    seq = pad_seq(entry.sequence_number) if entry.sequence_number else None
    # What a failing replay dead-letters again: the same entry (same sequence number).
    position = {"SequenceNumber": entry.sequence_number} if entry.sequence_number else {}
    record = entry.record or {"eventName": "REPLAY", "dynamodb": {"Keys": entry.keys, **position}}
    item = await get_item(client, entry.source_table, item_key(entry.keys))
    if item is not None:
        change = state_change(
            entry.keys, item, meta=meta, here=config.source_region, record=record, seq=seq
        )
        if not entry.recreate or change.incoming.tombstone:
            return change
        # A re-create (one-way: delete and create again below the old version) still is one.
        return dataclasses.replace(
            change, incoming=dataclasses.replace(change.incoming, recreate=True)
        )
    # Gone at the source: deliver the delete the record was, if it says which version.
    version = number((body.get("OldImage") or {}).get(meta.version))
    if version is None or seq is None:
        return None
    return Change(
        keys=entry.keys,
        incoming=Incoming(version, True, config.source_region, seq),
        item=None,
        sequence_number=seq,
        created_at=0.0,
        record=record,
    )


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
