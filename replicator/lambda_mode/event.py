"""What Lambda hands the handler, read into the shapes the pipeline code takes.

An event source mapping on a DynamoDB stream delivers ``{"Records": [...]}``: each
record as the stream has it, plus ``eventSourceARN``, in JSON. So
ApproximateCreationDateTime is epoch seconds (``to_change`` reads numbers as such) and
binary values (B, BS, also inside M and L) are base64 text, as ``replicator run``'s
GetRecords answers have them: a change is the same value whichever engine read it.

An event source mapping on a Kinesis data stream (a table's Kinesis streaming
destination, DESIGN §4c) delivers ``{"Records": [...]}`` with ``eventSource``
``aws:kinesis``: each record's ``kinesis.data`` is the base64 text of the JSON document
DynamoDB wrote, which ``batches.decode`` reads, as it reads what ``replicator run``'s
Kinesis reader hands it. Such a stream may carry several tables: the batch names the
stream, and the pairs reading it each take their own table's records.

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
# arn:aws:kinesis:<region>:<account>:stream/<name>
_KINESIS_ARN = re.compile(r"^arn:aws[\w-]*:kinesis:([\w-]+):\d*:stream/([A-Za-z0-9_.-]+)$")
KINESIS_SOURCE = "aws:kinesis"


@dataclass(frozen=True, slots=True)
class StreamBatch:
    """One invocation's records: all from one table's DynamoDB stream (one shard)."""

    stream_arn: str
    region: str
    table: str
    records: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class KinesisBatch:
    """One invocation's records: all from one shard of Kinesis data stream ``stream``."""

    stream_arn: str
    region: str
    stream: str  # its name
    records: list[dict[str, Any]]


def is_scheduled(event: Mapping[str, Any]) -> bool:
    """An EventBridge schedule's tick (the heartbeat), not a stream batch."""
    return event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event"


def stream_batch(event: Mapping[str, Any]) -> StreamBatch | KinesisBatch:
    """The records of a DynamoDB Streams or Kinesis event, as the stream has them.

    Raises ``ConfigError`` for an event that no such mapping sends: the function is
    wired to the wrong source.
    """
    records = event.get("Records")
    well_formed = isinstance(records, list) and all(isinstance(r, dict) for r in records)
    if not records or not well_formed:
        raise ConfigError(
            "the event has no list of Records: invoke the handler from a DynamoDB Streams or "
            "Kinesis event source mapping or an EventBridge schedule"
        )
    arns = {r.get("eventSourceARN") for r in records}
    if len(arns) != 1:
        raise ConfigError(
            f"the event's records come from {len(arns)} sources: a mapping "
            "delivers one stream's records per invocation"
        )
    (arn,) = arns
    if any(r.get("eventSource") == KINESIS_SOURCE for r in records):
        return _kinesis_batch(str(arn), records)
    match = _STREAM_ARN.match(str(arn))
    if match is None:
        raise ConfigError(
            f"eventSourceARN {arn!r} is not a DynamoDB stream ARN: map the function to the "
            "stream of a table listed in replicator.yaml"
        )
    return StreamBatch(str(arn), match[1], match[2], list(records))


def _kinesis_batch(arn: str, records: list[dict[str, Any]]) -> KinesisBatch:
    match = _KINESIS_ARN.match(arn)
    if match is None:
        raise ConfigError(
            f"eventSourceARN {arn!r} is not a Kinesis stream ARN: map the function to the "
            "Kinesis stream a pair names in kinesis_stream"
        )
    # The sequence number is what the response reports and the DLQ keeps; a record
    # without one was not sent by a mapping (its data, though, may be anything: the
    # decode dead-letters what is not DynamoDB's JSON).
    for record in records:
        body = record.get("kinesis")
        if record.get("eventSource") != KINESIS_SOURCE or not (
            isinstance(body, dict) and isinstance(body.get("sequenceNumber"), str)
        ):
            raise ConfigError(
                f"a record from {arn} is not a Kinesis record with kinesis.sequenceNumber: "
                "map the function to the Kinesis stream itself"
            )
    return KinesisBatch(arn, match[1], match[2], list(records))
