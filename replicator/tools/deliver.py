"""A stored state as the stream would deliver it: the write backfill, replay and repair send.

It carries the state's own version, tombstone flag and origin, and never makes one
up. It is never a re-create, so the normal rule decides (DESIGN §5b): a newer write
already on the target, from the stream or anywhere, always wins over it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from replicator.apply.applier import DeadLetterSink, TargetApplier
from replicator.aws.factory import Clients
from replicator.aws.tables import require_table
from replicator.config.schema import Config, Pair
from replicator.errors import RecordError
from replicator.models import Change, Incoming, Meta, TargetRef, WireItem, stored_from_item
from replicator.service.wiring import applier_for, target_writer
from replicator.telemetry.metrics import Metrics


def state_change(
    keys: WireItem,
    item: WireItem,
    *,
    meta: Meta,
    here: str,
    record: dict[str, Any],
    seq: str | None = None,
) -> Change:
    """``item`` as stored in region ``here``, as a change to apply to another table.

    ``seq`` (padded) places it in its origin's stream, when that is known.

    Raises ``RecordError`` when the item has no numeric version (it goes to the DLQ).
    """
    stored = stored_from_item(item, meta)
    if stored is None or stored.version is None:
        raise RecordError(f"item has no numeric version attribute {meta.version!r}")
    # A replicated state keeps its origin's stream position, so the fence orders it
    # against that origin's writes; a local write has none, and none is made up: the
    # fence then lets the origin's own stream win.
    if seq is None:
        seq = stored.seq if stored.replicated else ""
    return Change(
        keys=keys,
        incoming=Incoming(stored.version, stored.tombstone, stored.origin(here), seq),
        item=None if stored.tombstone else item,
        sequence_number=seq,
        created_at=0.0,
        record=record,
    )


async def target_applier(
    config: Config,
    pair: Pair,
    target: TargetRef,
    clients: Clients,
    *,
    dlq: DeadLetterSink,
    metrics: Metrics,
    stop: asyncio.Event,
    max_writes_per_second: float | None = None,
) -> TargetApplier:
    """The applier ``replicator run`` uses for ``target`` (checked to exist).

    ``max_writes_per_second`` replaces the pair's cap (backfill's ``--rate``).
    """
    await require_table(await clients.json("dynamodb", target.region), target.table, target.region)
    if max_writes_per_second is not None:
        pair = pair.model_copy(update={"max_writes_per_second": max_writes_per_second})
    writer = await target_writer(config, pair, target, clients, metrics, local=None)
    return applier_for(config, pair, target, writer=writer, dlq=dlq, metrics=metrics, stop=stop)
