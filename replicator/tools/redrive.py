"""What ``dlq replay`` writes for an entry: its key re-driven from the source's state now.

Replay does not resend the old record (an item fixed at the source replays fixed).
A DynamoDB Streams entry becomes the source item read now (strongly consistent),
placed at the record's stream position, applied by the normal rule.

A Kinesis entry of a one-way pair is re-driven under rule K (DESIGN §4c) exactly as a
tie is settled: the source item read now (strongly consistent), stamped with the
record's ts and ``_rep_event = resolved``, written only where the target's ``_rep_ts``
is not greater than that ts (``ConditionalWriter.settle``). Why this stamp:
- never over a newer record's state: a stored greater ts is a later change, kept;
- never lost: the source read comes after the record's change, so it holds that change
  or a later one; what is written at ts is replaced only by records of a greater ts,
  which the stream still holds and delivers, so the target still ends at the latest;
- a record of the same ts meets ``resolved``, not its own eventID: a tie, which reads
  the source again (a tick's later write is never taken for a duplicate).
"""

from __future__ import annotations

import base64
import dataclasses
import json
from decimal import Decimal
from typing import Any

from replicator.aws.json_client import DynamoDB
from replicator.errors import RecordError
from replicator.models import Change, Incoming, Meta, item_key, number, pad_seq
from replicator.pipeline.dlq import describe_record
from replicator.stream.kinesis_records import KINESIS_SOURCE
from replicator.tools.deliver import state_change
from replicator.tools.dlq_entry import Entry
from replicator.tools.scan import get_item

UNREPLAYABLE = (
    "undecodable Kinesis data names no key: it cannot be replayed (`replicator dlq show ID` "
    "shows the record; the source item's next change replicates it, or run verify --repair)"
)


def kinesis_redrive(entry: Entry, *, meta: Meta, here: str) -> Change:
    """The change ``ConditionalWriter.settle`` writes for a Kinesis entry (see above).

    Raises ``RecordError`` when the entry cannot be ordered under rule K.
    """
    assert entry.keys is not None
    if entry.ts is None:
        raise RecordError("the Kinesis record has no ApproximateCreationDateTime to order it by")
    if entry.record_table not in (None, entry.source_table):
        raise RecordError(f"the Kinesis record is a change of table {entry.record_table}")
    return Change(
        keys=entry.keys,
        # The version a tombstone keeps when the source item is gone (rule K orders by ts).
        incoming=Incoming(_version(entry, meta), False, here, "", False, entry.ts, ""),
        item=None,
        sequence_number=entry.sequence_number or "",
        created_at=entry.ts / 1e6,
        record=entry.record or _kinesis_record(entry),
    )


def _version(entry: Entry, meta: Meta) -> Decimal:
    body = _document(entry.record).get("dynamodb") or {}
    for image in ("OldImage", "NewImage"):
        version = number((body.get(image) or {}).get(meta.version))
        if version is not None:
            return version
    return Decimal(0)


def _document(record: dict[str, Any] | None) -> dict[str, Any]:
    return describe_record(record)[0] if record is not None else {}


def _kinesis_record(entry: Entry) -> dict[str, Any]:
    """A record for an entry stored without its own (too large): what a failing replay
    dead-letters again, as the same entry with the same ts."""
    document = {
        "eventName": "REPLAY",
        "eventID": entry.event_id or "",
        "tableName": entry.source_table,
        "dynamodb": {
            "Keys": entry.keys,
            "ApproximateCreationDateTime": entry.ts,
            "ApproximateCreationDateTimePrecision": "MICROSECOND",
        },
    }
    shard = entry.sk.partition("#")[2]  # ``pipeline.dlq`` keys an entry by seq#shard
    return {
        "eventSource": KINESIS_SOURCE,
        "eventID": f"{shard}:{entry.sequence_number or ''}",
        "kinesis": {
            "data": base64.b64encode(json.dumps(document).encode()).decode(),
            "sequenceNumber": entry.sequence_number or "",
        },
    }


async def stream_redrive(client: DynamoDB, entry: Entry, *, meta: Meta, here: str) -> Change | None:
    """A DynamoDB Streams entry's key as the source holds it now, at the record's position
    (also a Kinesis entry of a pair not written by rule K: active-active, §4c)."""
    assert entry.keys is not None
    body = (entry.record or {}).get("dynamodb") or {}
    seq = None
    if entry.sequence_number and not entry.kinesis:  # Kinesis' is no ``_rep_seq``
        seq = pad_seq(entry.sequence_number)
    # What a failing replay dead-letters again: the same entry (same sequence number).
    position = {"SequenceNumber": entry.sequence_number} if entry.sequence_number else {}
    record = entry.record or {"eventName": "REPLAY", "dynamodb": {"Keys": entry.keys, **position}}
    item = await get_item(client, entry.source_table, item_key(entry.keys))
    if item is not None:
        change = state_change(entry.keys, item, meta=meta, here=here, record=record, seq=seq)
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
        incoming=Incoming(version, True, here, seq),
        item=None,
        sequence_number=seq,
        created_at=0.0,
        record=record,
    )
