"""moto's server, as atomic as DynamoDB where replication relies on it.

moto serves each request on a thread of its own, and two of its steps race:

- a stream record is numbered ``len(records) + start`` and then appended
  (moto/dynamodb/models/table.py, ``StreamShard.add``): two writes to one table at the
  same moment can get the same SequenceNumber. A replicator rightly takes a sequence
  number it has seen for a redelivery, so the second write reads as lost;
- a conditional write reads the stored item, checks the condition, then stores: two
  conditional writes to one key at the same moment can both pass, and the one stored
  last wins whatever the condition said (last-writer-wins undone);
- PutItem and UpdateItem read the item they return as ``ReturnValues`` (ALL_OLD, and
  UpdateItem's old or new values) in the request handler, before the write: a write
  landing in between is replaced but not returned, so the conflict feed, which judges
  the item ALL_OLD returns (DESIGN §4b), missed that loss (about 1 fork in 100 in
  ``replicator demo --active-active`` on a loaded machine).

The first two showed up as rare divergences of three active-active regions on a loaded machine,
where applications and replicators write the same tables. DynamoDB does none of these: here
every write (put, update, delete, transaction) runs under one lock per process, and so
do PutItem's and UpdateItem's request handlers when they return values: numbering,
check-then-store and the returned old item are atomic. Reads are served as before.

Two answers differ from DynamoDB's for a table keyed by a binary (moto 5.2): a stream
record's ``Keys`` hold the base64 of the base64 text (its images are right), so a
binary-keyed delete would miss its item; and a parallel scan (``Segment``) fails with
HTTP 500, as it hashes the key as text. Here the keys are taken from the record's image,
as DynamoDB's agree with it, and a binary key is hashed as bytes.

    python -m replicator.demo.motoserver -H 127.0.0.1 -p PORT   (moto.server's arguments)
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable
from typing import Any

from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import Item
from moto.dynamodb.models.table import StreamRecord
from moto.dynamodb.responses import DynamoHandler
from moto.server import main

_writes = threading.RLock()  # re-entrant: a batch write stores through put_item


def _atomic(write: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(write)
    def under_lock(*args: Any, **kwargs: Any) -> Any:
        with _writes:
            return write(*args, **kwargs)

    return under_lock


for _name in ("put_item", "update_item", "delete_item", "transact_write_items"):
    setattr(DynamoDBBackend, _name, _atomic(getattr(DynamoDBBackend, _name)))


def _atomic_when_returning(handle: Callable[[DynamoHandler], Any]) -> Callable[..., Any]:
    """The request handler under the write lock when it returns values it read first;
    others keep parsing outside it (the drain benchmarks measure moto's write ceiling)."""

    @functools.wraps(handle)
    def maybe_under_lock(handler: DynamoHandler) -> Any:
        if handler.body.get("ReturnValues", "NONE") == "NONE":
            return handle(handler)
        with _writes:
            return handle(handler)

    return maybe_under_lock


for _name in ("put_item", "update_item"):
    setattr(DynamoHandler, _name, _atomic_when_returning(getattr(DynamoHandler, _name)))

_stream_record = StreamRecord.__init__


def _keys_of_the_image(record: StreamRecord, *args: Any, **kwargs: Any) -> None:
    _stream_record(record, *args, **kwargs)
    body = record.record["dynamodb"]
    image = body.get("OldImage") or body.get("NewImage") or {}
    body["Keys"] = {name: image.get(name, value) for name, value in body["Keys"].items()}


StreamRecord.__init__ = _keys_of_the_image  # type: ignore[method-assign,assignment]


def _within_segment(item: Item, segments: tuple[int | None, int | None]) -> bool:
    segment, total_segments = segments
    if segment is None or total_segments is None:  # not a parallel scan
        return True
    value = item.hash_key.value
    raw = value if isinstance(value, bytes) else str(value).encode()
    return hashlib.md5(raw, usedforsecurity=False).digest()[0] % total_segments == segment


Item.is_within_segment = _within_segment  # type: ignore[method-assign,assignment]

if __name__ == "__main__":
    main()
