"""Stream records as the low-level client returns them, built from plain Python values.

What ``FakeStream`` stores, and what tests hand the batcher and the pipeline directly.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Mapping
from typing import Any, Literal

from replicator.aws.binaries import wire_serializer

TTL_IDENTITY = {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"}
_event_ids = itertools.count(1)


def wire(values: Mapping[str, Any]) -> dict[str, Any]:
    """Plain Python attribute values (str, int, Decimal, bool, bytes...) in DynamoDB's JSON."""
    serialize = wire_serializer()
    return {name: serialize(value) for name, value in values.items()}


def stream_record(
    event_name: Literal["INSERT", "MODIFY", "REMOVE"],
    keys: Mapping[str, Any],
    *,
    new: Mapping[str, Any] | None = None,
    old: Mapping[str, Any] | None = None,
    sequence: str = "0",
    created: dt.datetime | None = None,
    region: str = "us-east-1",
    ttl: bool = False,
) -> dict[str, Any]:
    """A NEW_AND_OLD_IMAGES record as the low-level client returns it.

    Images always hold the key attributes, as DynamoDB's do. ``ttl`` marks a REMOVE
    done by the TTL sweeper (userIdentity of the DynamoDB service).
    """
    body: dict[str, Any] = {
        "ApproximateCreationDateTime": created or dt.datetime.now(dt.UTC),
        "Keys": wire(keys),
        "SequenceNumber": sequence,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new is not None:
        body["NewImage"] = wire({**new, **keys})
    if old is not None:
        body["OldImage"] = wire({**old, **keys})
    record: dict[str, Any] = {
        "eventID": f"fake-{next(_event_ids)}",
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": body,
    }
    if ttl:
        record["userIdentity"] = dict(TTL_IDENTITY)
    return record
