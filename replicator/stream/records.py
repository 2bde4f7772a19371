"""From stream records to changes: filter first, then coalesce (DESIGN §4).

Pure functions only; the pipeline feeds them decoded batches.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

from replicator.errors import RecordError
from replicator.models import (
    Change,
    Incoming,
    ItemKey,
    Meta,
    Mode,
    is_tombstone,
    is_zombie,
    number,
    pad_seq,
    stored_from_item,
)
from replicator.stream.kv import merge


@dataclass(frozen=True, slots=True)
class Skip:
    """A record that is deliberately not replicated, and why."""

    reason: str  # echo | local-tombstone | tombstone-expiry | remove-of-nothing | ttl-delete


ECHO = Skip("echo")
LOCAL_TOMBSTONE = Skip("local-tombstone")
TOMBSTONE_EXPIRY = Skip("tombstone-expiry")
REMOVE_OF_NOTHING = Skip("remove-of-nothing")
TTL_DELETE = Skip("ttl-delete")  # a pair with ttl_deletes: skip


def made_by_ttl(record: dict[str, Any]) -> bool:
    """Whether a REMOVE record is a TTL expiry: done by the DynamoDB service itself.

    The low-level client spells the identity ``Type``/``PrincipalId``, a Lambda event
    ``type``/``principalId``.
    """
    who = record.get("userIdentity")
    if not isinstance(who, dict):
        return False
    kind = who.get("Type", who.get("type"))
    principal = who.get("PrincipalId", who.get("principalId"))
    return kind == "Service" and principal == "dynamodb.amazonaws.com"


def epoch_seconds(value: Any) -> float:
    """ApproximateCreationDateTime as epoch seconds (botocore gives a datetime)."""
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, int | float | Decimal):
        return float(value)
    raise RecordError(f"ApproximateCreationDateTime is not a time: {value!r}")


class Position(NamedTuple):
    """Where a record sits in its stream: what a change carries besides its images.

    A DynamoDB Streams record has a SequenceNumber (``seq``, padded); a Kinesis record
    has none (``seq`` is "") but its ts (µs) and eventID, which rule K orders by.
    (A tuple: built for every record, a frozen dataclass cost 1 µs of a 9 µs decode.)
    """

    seq: str
    sequence_number: str
    created_at: float
    ts: int | None = None
    event_id: str = ""


def to_change(record: dict[str, Any], *, here: str, meta: Meta) -> Change | Skip:
    """Decide what one stream record of region ``here`` means for the targets.

    Raises ``RecordError`` for a record that cannot be applied (it goes to the DLQ).
    """
    body = record.get("dynamodb")
    if not isinstance(body, dict) or "Keys" not in body or "SequenceNumber" not in body:
        raise RecordError("stream record has no dynamodb.Keys / SequenceNumber")
    sequence = str(body["SequenceNumber"])
    created = epoch_seconds(body.get("ApproximateCreationDateTime", 0))
    position = Position(pad_seq(sequence), sequence, created)
    return change_of(record, record, position, here=here, meta=meta)


def change_of(
    record: dict[str, Any],
    document: dict[str, Any],
    position: Position,
    *,
    here: str,
    meta: Meta,
) -> Change | Skip:
    """DESIGN §4 rules 1-4 for one change as DynamoDB describes it (``document``: its
    eventName, userIdentity and ``dynamodb`` part), whichever stream delivered it;
    ``record`` is what the stream delivered, kept whole for the DLQ."""
    body = document["dynamodb"]
    event = document.get("eventName")
    old = body.get("OldImage")
    if event == "REMOVE":
        if old is None:
            return REMOVE_OF_NOTHING
        if is_tombstone(old, meta):
            return TOMBSTONE_EXPIRY
        version = number(old.get(meta.version))
        if version is None:
            raise RecordError(f"deleted item has no numeric version attribute {meta.version!r}")
        incoming = Incoming(
            version, True, here, position.seq, False, position.ts, position.event_id
        )
        return _change(record, body, position, incoming, item=None, by_ttl=made_by_ttl(document))
    if event not in ("INSERT", "MODIFY"):
        raise RecordError(f"unknown eventName {event!r}")
    new = body.get("NewImage")
    if new is None:
        raise RecordError("record has no NewImage: set the stream view type to NEW_AND_OLD_IMAGES")
    stored = stored_from_item(new, meta)
    if stored is None or stored.origin(here) != here:
        return ECHO
    if stored.tombstone:
        return LOCAL_TOMBSTONE
    if stored.version is None:
        raise RecordError(f"item has no numeric version attribute {meta.version!r}")
    recreate = old is None or is_tombstone(old, meta)
    incoming = Incoming(
        stored.version, False, here, position.seq, recreate, position.ts, position.event_id
    )
    # A zombie is replicated as the live write it is: ``target_item`` keeps user
    # attributes only, so ``_rep_deleted`` and ``_rep_expires`` never travel.
    return _change(record, body, position, incoming, item=new, heals_zombie=is_zombie(new, meta))


def _change(
    record: dict[str, Any],
    body: dict[str, Any],
    position: Position,
    incoming: Incoming,
    *,
    item: Any,
    heals_zombie: bool = False,
    by_ttl: bool = False,
) -> Change:
    return Change(
        keys=body["Keys"],
        incoming=incoming,
        item=item,
        sequence_number=position.sequence_number,
        created_at=position.created_at,
        record=record,
        heals_zombie=heals_zombie,
        by_ttl=by_ttl,
    )


def coalesces_into(run: Sequence[Change], following: Sequence[Change]) -> bool:
    """Whether a key's ``run`` of one batch may be left to its ``following`` run, of a later
    batch already read, instead of being written (DESIGN §4 rule 5 across batches).

    Only plain live writes on both sides: a run never crosses a REMOVE, and no re-create
    or zombie-heal flag is dropped. The following run is applied after this batch's
    checkpoint; a restart reads it again from there.
    """
    return bool(following) and _plain(following[0]) and all(map(_plain, run))


def _plain(change: Change) -> bool:
    # A Kinesis change is never left to a later batch: Kinesis order is not write order,
    # so the later batch's write may well be the older one (DESIGN §4c).
    incoming = change.incoming
    return not (
        incoming.tombstone or incoming.recreate or change.heals_zombie or incoming.ts is not None
    )


def coalesce(
    changes: Iterable[Change], *, mode: Mode = Mode.ONE_WAY
) -> dict[ItemKey, list[Change]]:
    """Per key, in stream order: each run of consecutive writes becomes its last write.

    The survivor carries the re-create flag if any write of its run was one, and (active-
    active) the merged kv of the whole run. A REMOVE
    (tombstone) is never merged with anything, so runs never cross it.

    Kinesis changes (DESIGN §4c) keep, per key, every change of the greatest ts (one-way:
    ties must meet rule K) or of the greatest order key (active-active), whatever their
    place in the batch; a redelivered record is kept once.
    """
    per_key: dict[ItemKey, list[Change]] = {}
    for change in changes:
        run = per_key.setdefault(change.key, [])
        if change.incoming.ts is not None:
            _keep_greatest(run, change, mode)
            continue
        last = run[-1] if run else None
        if last is None or last.incoming.tombstone or change.incoming.tombstone:
            run.append(change)
            continue
        survivor = change
        if last.incoming.recreate and not change.incoming.recreate:
            survivor = dataclasses.replace(
                change, incoming=dataclasses.replace(change.incoming, recreate=True)
            )
        if last.kv is not None and change.kv is not None:
            # §4b: a run's kv merges every record's; the last one's alone paired writes
            # with their own ancestors in the protocol model.
            survivor = dataclasses.replace(survivor, kv=merge((last.kv, change.kv)))
        run[-1] = survivor
    return per_key


def _keep_greatest(run: list[Change], change: Change, mode: Mode) -> None:
    rank = _kinesis_rank(change, mode)
    best = _kinesis_rank(run[0], mode) if run else None
    if best is None or rank > best:
        run[:] = [change]
    elif rank == best and all(c.incoming.event_id != change.incoming.event_id for c in run):
        run.append(change)


def _kinesis_rank(change: Change, mode: Mode) -> tuple[Decimal, bool, str]:
    """One-way: the ts alone (the version plays no part in rule K); active-active: the
    §3 order key."""
    incoming = change.incoming
    if mode is Mode.ACTIVE_ACTIVE:
        return (incoming.version, incoming.tombstone, incoming.origin)
    return (Decimal(incoming.ts or 0), False, "")


def sequence_of(record: dict[str, Any]) -> str:
    """A stream record's SequenceNumber as the stream spells it (a Kinesis record's
    ``kinesis.sequenceNumber``); "" when it has none."""
    body = record.get("dynamodb")
    if isinstance(body, dict):
        return str(body.get("SequenceNumber", ""))
    kinesis = record.get("kinesis")
    return str(kinesis.get("sequenceNumber", "")) if isinstance(kinesis, dict) else ""
