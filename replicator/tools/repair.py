"""``replicator verify --repair``: make targets hold their source's state again.

Repair is compare-and-set (DESIGN §5b): each write carries the condition "the
target still holds exactly the state verify saw" (version, tombstone, origin). If
the target moved meanwhile, the stream got there first: the key is skipped and
verified again. This fixes what the conflict rule cannot (a target ahead of its
source after a lost stream range or a stray local write) without ever racing the
live pipeline into a regression.

The repaired item carries no ``_rep_seq``, so the next stream write of its origin
passes the fence and replaces it as usual. A one-way Kinesis pair's repaired item
keeps the ``_rep_ts`` and ``_rep_event`` the target stored (DESIGN §4c): records
older than the replaced state are still refused, later ones still win.

Active-active mode has no source to copy: each region that does not show a key's
winner gets the winner delivered through the normal conditional rule, exactly as
the stream would deliver it. It cannot lower what a region holds (the rule refuses
that) and it never invents a version: a repair that wrote one region's view over a
region that is ahead could freeze a divergence for good.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from replicator.apply.writer import ConditionalWriter
from replicator.aws.classify import classify, is_conditional_check_failed
from replicator.aws.factory import Clients
from replicator.aws.json_client import DynamoDB
from replicator.aws.retry import RetryPolicy
from replicator.config.schema import Config, Pair
from replicator.errors import AwsError, RecordError
from replicator.models import (
    Change,
    Meta,
    Mode,
    Outcome,
    WireItem,
    number,
    stored_from_item,
)
from replicator.service.wiring import meta_for, selection_for
from replicator.tools.deliver import SCANNED, by_rule_k, state_change
from replicator.tools.scan import wire_key
from replicator.tools.verify import Difference, Report


@dataclass
class RepairReport:
    repaired: int = 0
    moved: list[Difference] = field(default_factory=list)  # target changed: left to the stream
    unrepairable: list[tuple[Difference, str]] = field(default_factory=list)


def repaired_item(
    difference: Difference,
    *,
    meta: Meta,
    source_region: str,
    ttl_seconds: int,
    now: float,
    rule_k: bool = False,
) -> WireItem:
    """The source's state as the target should hold it: a live item or a tombstone.

    ``rule_k`` (a one-way Kinesis pair, DESIGN §4c): the item keeps the ``_rep_ts`` and
    ``_rep_event`` the target stores, so a record older than the state it replaces is
    still refused and a later one still wins; where none is stored it is stamped like a
    backfilled item (``_rep_ts = 0``: every record supersedes it).
    """
    source, target = difference.source_item, difference.target_item
    keys = wire_key(difference.key)
    stored = stored_from_item(source, meta)
    origin = stored.origin(source_region) if stored else source_region
    order = _record_order(target, meta) if rule_k else {}
    if source is not None and stored is not None and not stored.tombstone:
        if stored.version is None:
            raise ValueError(f"the source item has no numeric {meta.version!r}")
        user_data = {k: v for k, v in source.items() if not k.startswith(meta.prefix)}
        return {**user_data, **_stamp(meta, stored.version, origin), **order}
    versions = [
        v
        for v in (
            number((source or {}).get(meta.version)),
            number((target or {}).get(meta.version)),
        )
        if v is not None
    ]
    version = max(versions, default=0)
    return {
        **keys,
        **_stamp(meta, version, origin),
        **order,
        meta.deleted: {"BOOL": True},
        meta.expires: {"N": str(int(now) + ttl_seconds)},
    }


def _record_order(target: WireItem | None, meta: Meta) -> WireItem:
    """Rule K's stamp a repair keeps: the stored ``_rep_ts`` and ``_rep_event``."""
    seen = target or {}
    if meta.ts not in seen:
        return {meta.ts: {"N": "0"}, meta.event: {"S": SCANNED}}
    return {meta.ts: seen[meta.ts], meta.event: seen.get(meta.event, {"S": SCANNED})}


def _stamp(meta: Meta, version: Any, origin: str) -> WireItem:
    return {
        meta.version: {"N": str(version)},
        meta.rep_version: {"N": str(version)},
        meta.origin: {"S": origin},
    }


def unchanged_condition(
    difference: Difference, meta: Meta, *, rule_k: bool = False
) -> dict[str, Any]:
    """PutItem arguments requiring the target item to be exactly as verify saw it
    (``rule_k``: its record's ``_rep_ts`` and ``_rep_event`` too)."""
    seen = difference.target_item
    partition_key = difference.key[0][0]
    if seen is None:
        return {
            "ConditionExpression": "attribute_not_exists(#k)",
            "ExpressionAttributeNames": {"#k": partition_key},
        }
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    terms = []
    compared = [meta.version, meta.rep_version, meta.origin, meta.seq]
    if rule_k:
        compared += [meta.ts, meta.event]
    for index, attribute in enumerate(compared):
        names[f"#a{index}"] = attribute
        if attribute in seen:
            values[f":a{index}"] = seen[attribute]
            terms.append(f"#a{index} = :a{index}")
        else:
            terms.append(f"attribute_not_exists(#a{index})")
    names["#d"] = meta.deleted
    terms.append("attribute_exists(#d)" if meta.deleted in seen else "attribute_not_exists(#d)")
    condition: dict[str, Any] = {
        "ConditionExpression": " AND ".join(terms),
        "ExpressionAttributeNames": names,
    }
    if values:
        condition["ExpressionAttributeValues"] = values
    return condition


def winner_change(difference: Difference, meta: Meta) -> Change:
    """The key's winner as the stream would deliver it: its own version, origin and seq."""
    if difference.source_item is None:
        raise ValueError("no region holds the key")
    try:
        return state_change(
            wire_key(difference.key),
            difference.source_item,
            meta=meta,
            here=difference.holder.split("/", 1)[0],
            record={},
        )
    except RecordError as exc:
        raise ValueError(f"the winning item: {exc}") from exc


async def repair(
    config: Config,
    report: Report,
    *,
    clock: Callable[[], float] = time.time,
) -> RepairReport:
    """Fix each persistent difference: compare-and-set one-way, the winner active-active."""
    result = RepairReport()
    pairs = {pair.source_table: pair for pair in config.pairs}
    clients = Clients.for_config(config)
    retry = RetryPolicy()  # a throttled or unreachable region is waited out, as in `run`
    try:
        for difference in report.differences:
            pair = pairs[difference.source_table]
            region, table = difference.target.split("/", 1)
            client = await clients.json("dynamodb", region)
            try:
                written = await retry.call(
                    "repair write",
                    region,
                    functools.partial(
                        _write,
                        config,
                        pair,
                        client,
                        region,
                        table,
                        difference=difference,
                        now=clock(),
                    ),
                )
            except ValueError as exc:
                result.unrepairable.append((difference, str(exc)))
                continue
            except AwsError as exc:
                if not exc.record_fault:
                    raise
                result.unrepairable.append((difference, str(exc)))
                continue
            if written:
                result.repaired += 1
            else:
                result.moved.append(difference)
        return result
    finally:
        await clients.aclose()


async def _write(
    config: Config,
    pair: Pair,
    client: DynamoDB,
    region: str,
    table: str,
    *,
    difference: Difference,
    now: float,
) -> bool:
    """One repair write: the winner active-active, compare-and-set one-way; True if written."""
    meta = meta_for(config, pair)
    if config.mode is Mode.ACTIVE_ACTIVE:
        writer = ConditionalWriter(
            client,
            table,
            region=region,
            meta=meta,
            mode=config.mode,
            tombstone_ttl_seconds=pair.tombstone_ttl_seconds,
            selection=selection_for(config, pair),
        )
        return await writer.put(winner_change(difference, meta), now=now) is Outcome.APPLIED
    return await _compare_and_set(
        client,
        table,
        difference,
        meta,
        ttl_seconds=pair.tombstone_ttl_seconds,
        now=now,
        rule_k=by_rule_k(config, pair),
    )


async def _compare_and_set(
    client: DynamoDB,
    table: str,
    difference: Difference,
    meta: Meta,
    *,
    ttl_seconds: int,
    now: float,
    rule_k: bool,
) -> bool:
    """Write the source's state if the target still holds what verify saw; False if it moved."""
    item = repaired_item(
        difference,
        meta=meta,
        source_region=difference.holder.split("/", 1)[0],
        ttl_seconds=ttl_seconds,
        now=now,
        rule_k=rule_k,
    )
    condition = unchanged_condition(difference, meta, rule_k=rule_k)
    try:
        await client.put_item(TableName=table, Item=item, **condition)
    except ClientError as exc:
        if not is_conditional_check_failed(exc):
            raise classify(exc) from exc
        return False
    except Exception as exc:
        raise classify(exc) from exc
    return True
