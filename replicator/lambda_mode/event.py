"""What Lambda hands the handler, read into the shapes the pipeline code takes.

An event source mapping on a DynamoDB stream delivers ``{"Records": [...]}``: each
record as the stream has it, plus ``eventSourceARN``, in JSON. So
ApproximateCreationDateTime is epoch seconds (``to_change`` reads numbers as such) and
binary values (B, BS, also inside M and L) are base64 text, as ``replicator run``'s
GetRecords answers have them: a change is the same value whichever engine read it.

A scheduled EventBridge rule delivers ``{"source": "aws.events", "detail-type":
"Scheduled Event", ...}``: the heartbeat tick.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from replicator.errors import ConfigError

# arn:aws:dynamodb:<region>:<account>:table/<table>/stream/<label>
_STREAM_ARN = re.compile(r"^arn:aws[\w-]*:dynamodb:([\w-]+):\d*:table/([^/]+)/stream/.+$")


@dataclass(frozen=True, slots=True)
class StreamBatch:
    """One invocation's records: all from one stream (one mapping, one shard)."""

    stream_arn: str
    region: str
    table: str
    records: list[dict[str, Any]]


def is_scheduled(event: Mapping[str, Any]) -> bool:
    """An EventBridge schedule's tick (the heartbeat), not a stream batch."""
    return event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event"


def stream_batch(event: Mapping[str, Any]) -> StreamBatch:
    """The records of a DynamoDB Streams event, as the stream has them.

    Raises ``ConfigError`` for an event that no DynamoDB stream mapping sends: the
    function is wired to the wrong source.
    """
    records = event.get("Records")
    well_formed = isinstance(records, list) and all(isinstance(r, dict) for r in records)
    if not records or not well_formed:
        raise ConfigError(
            "the event has no list of Records: invoke the handler from a DynamoDB Streams "
            "event source mapping or an EventBridge schedule"
        )
    arns = {r.get("eventSourceARN") for r in records}
    if len(arns) != 1:
        raise ConfigError(
            f"the event's records come from {len(arns)} sources: a DynamoDB Streams mapping "
            "delivers one stream's records per invocation"
        )
    (arn,) = arns
    match = _STREAM_ARN.match(str(arn))
    if match is None:
        raise ConfigError(
            f"eventSourceARN {arn!r} is not a DynamoDB stream ARN: map the function to the "
            "stream of a table listed in replicator.yaml"
        )
    return StreamBatch(str(arn), match[1], match[2], list(records))
