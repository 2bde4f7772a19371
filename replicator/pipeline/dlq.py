"""The dead-letter queue: a DynamoDB table of records that could not be applied.

An entry always fits in DynamoDB's 400 KB, whatever the record: the stream record
(both images, as JSON) is stored zlib-compressed in the binary attribute ``record``.
Where even that does not fit (a record of two large, incompressible images), the
entry keeps what identifies and checks it: the keys, sequence number, event name,
the images' sizes and SHA-256 digests, with ``images_omitted`` set; the item itself
is still in the source table. Every entry has the target, the reason and the
re-create flag of the write, so ``replicator dlq replay`` can retry it once the
cause is fixed. Puts go through the retry policy.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import zlib
from collections.abc import Callable
from typing import Any

from replicator.aws.factory import guarded_send
from replicator.aws.json_client import DynamoDB
from replicator.aws.retry import RetryPolicy
from replicator.models import TargetRef, WireItem, pad_seq
from replicator.pipeline.itemsize import MAX_ITEM_BYTES, item_size
from replicator.stream.records import sequence_of

# Room left in an entry for its own attributes when deciding whether the record fits.
ENTRY_HEADROOM_BYTES = 16 * 1024
MAX_REASON_CHARS = 1000
IMAGES = ("NewImage", "OldImage")


def record_json(record: dict[str, Any]) -> str:
    """The stream record as JSON (binaries are base64 text already; datetimes as strings)."""
    return json.dumps(record, default=str, sort_keys=True)


def decode_record(entry: WireItem) -> dict[str, Any] | None:
    """The stream record stored in a DLQ entry; None when its images were omitted."""
    stored = entry.get("record", {}).get("B")
    if stored is None:
        return None
    record: dict[str, Any] = json.loads(zlib.decompress(base64.b64decode(stored)))
    return record


def dlq_entry(
    *,
    source_table: str,
    target: TargetRef,
    record: dict[str, Any],
    reason: str,
    recreate: bool,
    failed_at: float,
) -> WireItem:
    """The DLQ item for ``record``, at most ``MAX_ITEM_BYTES`` large."""
    body = record.get("dynamodb")
    body = body if isinstance(body, dict) else {}
    seq = sequence_of(record)  # a Kinesis record's is its kinesis.sequenceNumber
    entry: WireItem = {
        "pk": {"S": f"{source_table}#{target.region}#{target.table}"},
        "sk": {"S": pad_seq(seq) if seq else f"unsequenced#{time.time_ns()}"},
        "source_table": {"S": source_table},
        "target_region": {"S": target.region},
        "target_table": {"S": target.table},
        "reason": {"S": reason[:MAX_REASON_CHARS] or "unknown"},
        "event_name": {"S": str(record.get("eventName", ""))},
        "sequence_number": {"S": seq or "none"},
        "keys": {"S": record_json(body.get("Keys", {}))[: 4 * 1024]},
        "recreate": {"BOOL": recreate},
        "failed_at": {"N": f"{failed_at:.3f}"},
    }
    text = record_json(record).encode()
    compressed = zlib.compress(text, 6)
    entry["record_bytes"] = {"N": str(len(text))}
    if item_size(entry) + len(compressed) + ENTRY_HEADROOM_BYTES <= MAX_ITEM_BYTES:
        entry["record"] = {"B": base64.b64encode(compressed).decode()}
        return entry
    entry["images_omitted"] = {"BOOL": True}
    for image in IMAGES:
        if (value := body.get(image)) is not None:
            serialized = record_json(value).encode()
            entry[f"{image}_bytes"] = {"N": str(len(serialized))}
            entry[f"{image}_sha256"] = {"S": hashlib.sha256(serialized).hexdigest()}
    return entry


class DeadLetterQueue:
    def __init__(
        self,
        client: DynamoDB,
        table: str,
        *,
        retry: RetryPolicy | None = None,
        guard: Callable[[], None] | None = None,
    ) -> None:
        self._client = client
        self._table = table
        self._retry = retry or RetryPolicy()
        self._region = client.region
        # Asked before every attempt of a put (HA: may this process still write?).
        self._guard = guard

    async def put(
        self,
        *,
        source_table: str,
        target: TargetRef,
        record: dict[str, Any],
        reason: str,
        recreate: bool = False,
    ) -> None:
        entry = dlq_entry(
            source_table=source_table,
            target=target,
            record=record,
            reason=reason,
            recreate=recreate,
            failed_at=time.time(),
        )

        async def attempt() -> None:
            with guarded_send(self._guard):
                await self._client.put_item(TableName=self._table, Item=entry)

        await self._retry.call("DLQ put", self._region, attempt)

    async def count(self) -> int:
        """Number of entries (a full count; the DLQ is small by design)."""
        total, kwargs = 0, {"TableName": self._table, "Select": "COUNT"}
        while True:
            page = await self._retry.call(
                "DLQ count", self._region, lambda: self._client.scan(**kwargs)
            )
            total += int(page.get("Count", 0))
            if "LastEvaluatedKey" not in page:
                return total
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
