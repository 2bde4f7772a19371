"""One DLQ entry as ``replicator dlq`` reads it, whatever version of the writer stored it.

Entries are read tolerantly: the record may be stored as JSON text or compressed
bytes, or left out (too large: then the entry's own ``keys`` name the item), and
entries of the container and the Lambda modes alike carry the target and the reason.
A Kinesis record's keys, table and ts come from its decoded data (``pipeline.dlq``);
one whose data does not decode is shown as undecodable.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from replicator.models import TargetRef, WireItem, item_key, number
from replicator.pipeline.dlq import decode_record, describe_record
from replicator.stream.kinesis_records import UNDECODABLE


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
    kinesis: bool = False  # from a Kinesis stream: re-driven under rule K, at ``ts``
    undecodable: bool = False  # a Kinesis record whose data does not decode: no key
    record_table: str | None = None  # the table a Kinesis record's change is of
    ts: int | None = None  # a Kinesis record's ApproximateCreationDateTime, µs
    event_id: str | None = None  # a Kinesis record's eventID

    @property
    def id(self) -> str:
        return hashlib.sha1(f"{self.pk}\0{self.sk}".encode()).hexdigest()[:12]

    def key_text(self) -> str:
        if self.undecodable:
            return f"{UNDECODABLE} (Kinesis data)"
        if not self.keys:
            return "?"
        return ", ".join(f"{n}={v}" for n, _, v in item_key(self.keys))

    def line(self) -> str:
        table = f" (table {self.record_table})" if self.record_table else ""
        return (
            f"{self.id}  {self.source_table} -> {self.target}  {self.key_text()}{table}  "
            f"first {_when(self.first_failed_at)}  last {_when(self.last_failed_at)}  "
            f"attempts {self.attempts}  {self.reason}"
        )

    def as_json(self) -> dict[str, Any]:
        found = {
            "id": self.id,
            "source_table": self.source_table,
            "target": str(self.target),
            "keys": self.key_text(),
            "reason": self.reason,
            "first_failure": self.first_failed_at,
            "last_failure": self.last_failed_at,
            "attempts": self.attempts,
        }
        if self.kinesis:
            found["kinesis"] = {
                "table": self.record_table,
                "undecodable": self.undecodable,
                "ts": self.ts,
                "event_id": self.event_id,
            }
        return found


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def read_entry(row: WireItem) -> Entry:
    """One DLQ row, whatever the writer's version stored (unknown attributes ignored)."""
    record = _record(row)
    document, described = describe_record(record) if record is not None else ({}, {})
    # Entries written before Kinesis entries were described still hold the record.
    row = {**described, **row}
    body = document.get("dynamodb")
    body = body if isinstance(body, dict) else None
    keys = body.get("Keys") if body is not None else None
    if not keys and "keys" in row:
        keys = _json_or_map(row["keys"])
    failed = number(row.get("failed_at")) or 0
    ts = number(row.get("ts"))
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
        keys=keys or None,
        kinesis=_flag(row, "kinesis"),
        undecodable=_flag(row, "undecodable"),
        record_table=row.get("record_table", {}).get("S"),
        ts=None if ts is None else int(ts),
        event_id=row.get("event_id", {}).get("S"),
    )


def _flag(row: WireItem, name: str) -> bool:
    return bool(row.get(name, {}).get("BOOL", False))


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
