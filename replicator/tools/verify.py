"""``replicator verify``: compare what readers see in the source and each target.

Visible state: a tombstone equals absence, the heartbeat item is ignored and
metadata attributes are not user data. A difference may be replication still in
flight, so differing keys are re-read (strongly consistent) a few times and only
what persists is reported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from replicator.aws import Clients, classify
from replicator.config import Config, Pair
from replicator.errors import ConfigError
from replicator.models import (
    ItemKey,
    Meta,
    WireItem,
    is_tombstone,
    item_key,
    number,
    visible_item,
)
from replicator.service import meta_for
from replicator.tables import describe, key_schema_of

SCAN_SEGMENTS = 4
RECHECK_ROUNDS = 5
RECHECK_DELAY_SECONDS = 0.5

_deserialize = TypeDeserializer().deserialize
Visible = dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Difference:
    source_table: str
    target: str
    key: ItemKey
    kind: str  # missing | extra | stale | resurrected | version regression
    # The raw items as last read: what repair writes from, and the state it must still find.
    source_item: WireItem | None = field(default=None, compare=False, repr=False)
    target_item: WireItem | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        key = ", ".join(f"{name}={value}" for name, _, value in self.key)
        return f"{self.kind:18} {self.source_table} -> {self.target}  {key}"


@dataclass
class Report:
    compared: int = 0
    differences: list[Difference] = field(default_factory=list)


def visible(item: WireItem | None, meta: Meta) -> Visible:
    """What a reader that skips tombstones sees of ``item`` (None: nothing)."""
    seen = visible_item(item, meta)
    return None if seen is None else {k: _deserialize(v) for k, v in seen.items()}


def is_heartbeat(key: ItemKey, heartbeat_prefix: str) -> bool:
    return any(value.startswith(heartbeat_prefix) for _, _, value in key)


def kind_of(source: WireItem | None, target: WireItem | None, meta: Meta) -> str | None:
    """How the target differs from the source as readers see them (None: it does not)."""
    seen_source, seen_target = visible(source, meta), visible(target, meta)
    if seen_source == seen_target:
        return None
    if seen_target is None:
        return "version regression" if _regressed(source, target, meta) else "missing"
    if seen_source is None:
        return "resurrected" if source is not None and is_tombstone(source, meta) else "extra"
    return "stale"


def _regressed(source: WireItem | None, target: WireItem | None, meta: Meta) -> bool:
    # The source re-created the key below the version of the tombstone the target holds:
    # the active-active contract was broken and last-writer-wins keeps the delete.
    if source is None or target is None or not is_tombstone(target, meta):
        return False
    live = number(source.get(meta.version))
    dead = number(target.get(meta.version))
    return live is not None and dead is not None and live <= dead


async def scan_all(client: Any, table: str, key_names: list[str]) -> dict[ItemKey, WireItem]:
    """Every item of ``table`` by key, read with a parallel scan."""

    async def segment(number: int) -> dict[ItemKey, WireItem]:
        found: dict[ItemKey, WireItem] = {}
        kwargs: dict[str, Any] = {
            "TableName": table,
            "Segment": number,
            "TotalSegments": SCAN_SEGMENTS,
            "ConsistentRead": True,
        }
        while True:
            try:
                page = await client.scan(**kwargs)
            except Exception as exc:
                raise classify(exc) from exc
            for item in page.get("Items", []):
                found[item_key({n: item[n] for n in key_names})] = item
            if "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    merged: dict[ItemKey, WireItem] = {}
    for part in await asyncio.gather(*(segment(n) for n in range(SCAN_SEGMENTS))):
        merged.update(part)
    return merged


async def get_item(client: Any, table: str, key: ItemKey) -> WireItem | None:
    try:
        response = await client.get_item(
            TableName=table, Key={n: {t: v} for n, t, v in key}, ConsistentRead=True
        )
    except Exception as exc:
        raise classify(exc) from exc
    item: WireItem | None = response.get("Item")
    return item


async def verify_pair(
    config: Config,
    pair: Pair,
    clients: Clients,
    *,
    recheck_delay: float = RECHECK_DELAY_SECONDS,
    on_progress: Callable[[str], None] = lambda _: None,
) -> Report:
    meta = meta_for(config, pair)
    prefix = config.heartbeat.key_prefix
    source_client = await clients.get("dynamodb", config.source_region)
    description = await describe(source_client, pair.source_table)
    if description is None:
        raise ConfigError(
            f"source table {pair.source_table} does not exist in {config.source_region}"
        )
    key_names = [name for name, _, _ in key_schema_of(description)]
    on_progress(f"scanning {config.source_region}/{pair.source_table}")
    source_items = await scan_all(source_client, pair.source_table, key_names)
    report = Report()
    for target in pair.targets:
        target_client = await clients.get("dynamodb", target.region)
        on_progress(f"scanning {target.region}/{target.table}")
        target_items = await scan_all(target_client, target.table, key_names)
        keys = {k for k in source_items.keys() | target_items.keys() if not is_heartbeat(k, prefix)}
        report.compared += len(keys)
        states = {k: (source_items.get(k), target_items.get(k)) for k in keys}
        suspects = {k: state for k, state in states.items() if kind_of(*state, meta)}
        for round_ in range(RECHECK_ROUNDS):
            if not suspects:
                break
            if round_:
                await asyncio.sleep(recheck_delay)
            on_progress(f"re-reading {len(suspects)} differing key(s), round {round_ + 1}")
            fresh: dict[ItemKey, tuple[WireItem | None, WireItem | None]] = {}
            for k in suspects:
                state = (
                    await get_item(source_client, pair.source_table, k),
                    await get_item(target_client, target.table, k),
                )
                if kind_of(*state, meta):
                    fresh[k] = state
            suspects = fresh
        for k, state in sorted(suspects.items()):
            report.differences.append(
                Difference(
                    pair.source_table,
                    f"{target.region}/{target.table}",
                    k,
                    kind_of(*state, meta) or "",
                    source_item=state[0],
                    target_item=state[1],
                )
            )
    return report


async def verify(
    config: Config,
    *,
    recheck_delay: float = RECHECK_DELAY_SECONDS,
    on_progress: Callable[[str], None] = lambda _: None,
) -> Report:
    """Compare every pair; the report lists differences that persisted through re-reads."""
    clients = Clients(config.endpoints)
    try:
        total = Report()
        for pair in config.pairs:
            report = await verify_pair(
                config, pair, clients, recheck_delay=recheck_delay, on_progress=on_progress
            )
            total.compared += report.compared
            total.differences.extend(report.differences)
        return total
    finally:
        await clients.aclose()
