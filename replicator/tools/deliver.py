"""A stored state as the stream would deliver it: the write backfill, replay and repair send.

It carries the state's own version, tombstone flag and origin, and never makes one
up. It is never a re-create, so the normal rule decides (DESIGN §5b): a newer write
already on the target, from the stream or anywhere, always wins over it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from replicator.apply.applier import DeadLetterSink, TargetApplier
from replicator.apply.writer import ConditionalWriter
from replicator.aws.factory import Clients
from replicator.aws.tables import require_table
from replicator.config.schema import Config, Pair
from replicator.errors import RecordError
from replicator.models import (
    Change,
    Incoming,
    Meta,
    Mode,
    Outcome,
    TargetRef,
    WireItem,
    stored_from_item,
)
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


# ``_rep_event`` of a state a tool read from the source rather than from a record.
SCANNED = "scanned"


def by_rule_k(config: Config, pair: Pair) -> bool:
    """Whether ``pair``'s targets are written by rule K (a one-way Kinesis pair, §4c)."""
    return pair.kinesis_stream is not None and config.mode is Mode.ONE_WAY


def before_every_record(change: Change) -> Change:
    """A scanned state for a rule-K target (DESIGN §4c): stamped ``_rep_ts = 0``.

    Rule K's condition at ts 0 ("no ``_rep_ts``, or one below 0") writes it only where
    no record's state is stored, and every record of the stream supersedes it, so the
    greatest-ts record of a key still ends as the target's state. An item without
    ``_rep_ts`` (a local write, a copy made before the pair read Kinesis) follows no
    record's order, and the scan replaces it.
    """
    incoming = dataclasses.replace(change.incoming, seq="", ts=0, event_id=SCANNED)
    return dataclasses.replace(change, incoming=incoming, sequence_number="")


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
    settle: bool = False,
) -> TargetApplier:
    """The applier ``replicator run`` uses for ``target`` (checked to exist).

    ``max_writes_per_second`` replaces the pair's cap (backfill's ``--rate``).
    ``settle``: each change is written as rule K settles a tie (``_Settling``).
    """
    await require_table(await clients.json("dynamodb", target.region), target.table, target.region)
    if max_writes_per_second is not None:
        pair = pair.model_copy(update={"max_writes_per_second": max_writes_per_second})
    writer = await target_writer(config, pair, target, clients, metrics, local=None)
    if settle:
        assert isinstance(writer, ConditionalWriter)  # no local target: never a LocalWriter
        writer = _Settling(writer)
    return applier_for(config, pair, target, writer=writer, dlq=dlq, metrics=metrics, stop=stop)


class _Settling:
    """Writes each change as rule K settles a tie: the source item read now, at the
    change's ts, over nothing newer (``ConditionalWriter.settle``; ``tools.redrive``)."""

    def __init__(self, writer: ConditionalWriter) -> None:
        self._writer = writer

    async def put(self, change: Change, *, now: float) -> Outcome:
        return await self._writer.settle(change, now=now)
