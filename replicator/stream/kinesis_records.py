"""From a Kinesis record to a change (DESIGN §4c): decode, then the filters of §4.

A record arrives in the shape of a Lambda Kinesis event's record (the container
reader gives GetRecords' records that shape too): ``kinesis.data`` is the base64 text
of the JSON document DynamoDB wrote for one change of one table. What that document
means is decided by ``records.change_of``, as for a DynamoDB Streams record; what is
Kinesis' own is the position: the ts (µs), the eventID and the Kinesis sequence number.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from replicator.errors import RecordError
from replicator.models import Change, Meta
from replicator.stream.records import Position, Skip, change_of

KINESIS_SOURCE = "aws:kinesis"
OTHER_TABLE = Skip("other-table")  # a stream may carry several tables' changes
# What a record whose data does not decode is called where its keys would be shown.
UNDECODABLE = "undecodable"
# ApproximateCreationDateTimePrecision -> µs per unit; absent means milliseconds.
_MICROSECONDS_PER = {"MICROSECOND": 1, "MILLISECOND": 1000, None: 1000}


def is_kinesis(record: dict[str, Any]) -> bool:
    return record.get("eventSource") == KINESIS_SOURCE


def to_change(record: dict[str, Any], *, here: str, meta: Meta, table: str) -> Change | Skip:
    """What one Kinesis record means for the targets of the pair of source ``table``.

    Raises ``RecordError`` for a record that cannot be applied (it goes to the DLQ).
    """
    document = document_of(record)
    if document.get("tableName") != table:
        return OTHER_TABLE
    body = document.get("dynamodb")
    if not isinstance(body, dict) or not isinstance(body.get("Keys"), dict):
        raise RecordError("Kinesis record's change has no dynamodb.Keys")
    ts = timestamp_us(body)
    kinesis = record["kinesis"]
    position = Position(
        seq="",
        sequence_number=str(kinesis.get("sequenceNumber", "")),
        created_at=ts / 1e6,
        ts=ts,
        event_id=str(document.get("eventID", "")),
    )
    # ``record`` stays whole (data still base64): the DLQ keeps what Kinesis delivered.
    return change_of(record, document, position, here=here, meta=meta)


def timestamp_us(body: dict[str, Any]) -> int:
    """The change's ApproximateCreationDateTime in µs, whatever the stream's precision."""
    value = body.get("ApproximateCreationDateTime")
    if not isinstance(value, int) or isinstance(value, bool):
        raise RecordError(f"ApproximateCreationDateTime is not an integer: {value!r}")
    precision = body.get("ApproximateCreationDateTimePrecision")
    if precision not in _MICROSECONDS_PER:
        raise RecordError(f"unknown ApproximateCreationDateTimePrecision {precision!r}")
    return value * _MICROSECONDS_PER[precision]


def change_body(record: dict[str, Any]) -> dict[str, Any]:
    """The ``dynamodb`` part of a record from either stream (a Kinesis record's is inside
    its decoded document); {} when there is none. What the DLQ and the dead-letter log
    read the keys from.

    Raises ``RecordError`` when a Kinesis record's data does not decode.
    """
    document = document_of(record) if is_kinesis(record) else record
    body = document.get("dynamodb")
    return body if isinstance(body, dict) else {}


def document_of(record: dict[str, Any]) -> dict[str, Any]:
    """The JSON document DynamoDB wrote, decoded from a Kinesis record's base64 data.

    Raises ``RecordError`` when the data is not base64 JSON of an object.
    """
    kinesis = record.get("kinesis")
    data = kinesis.get("data") if isinstance(kinesis, dict) else None
    if not isinstance(data, str):
        raise RecordError("Kinesis record has no kinesis.data")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RecordError(f"Kinesis data is not base64: {exc}") from None
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"Kinesis data is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise RecordError(f"Kinesis data is not a JSON object: {type(document).__name__}")
    return document
