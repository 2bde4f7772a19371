"""The lab's DynamoDB-stream-to-Kinesis bridge on moto: every change arrives, as Kinesis would.

A history of inserts, updates, deletes and re-creates is written to a source table while
the bridge runs; the Kinesis stream is then read back, every shard from the trim horizon.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from replicator.aws.factory import Clients
from replicator.aws.json_client import DynamoDB
from replicator.aws.tables import ensure_table
from replicator.demo.kinesis_bridge import Delivery, KinesisBridge, ensure_stream
from replicator.demo.kinesis_delivery import Precision
from replicator.demo.kinesis_stream import Delivered, document, read_stream
from replicator.stream.fake_records import stream_record
from replicator.stream.records import made_by_ttl

pytestmark = pytest.mark.timeout(60)

# Not us-east-1: moto's stream records name that region whatever the server's.
REGION = "eu-west-1"
SHARDS = 4
KEYS = 30
# Per key, in this order: created, updated, deleted, re-created, updated again.
ROUNDS = ("INSERT", "MODIFY", "MODIFY", "MODIFY", "REMOVE", "INSERT", "MODIFY", "MODIFY")
FIELDS = {
    "awsRegion",
    "eventID",
    "eventName",
    "userIdentity",
    "recordFormat",
    "tableName",
    "dynamodb",
    "eventSource",
}


@dataclass(frozen=True)
class Change:
    """One change of the source table, named by what a record of it shows."""

    key: str
    event: str
    n: int  # the write counter in its NewImage, or in its OldImage for a REMOVE


@dataclass
class Rig:
    clients: Clients
    dynamodb: DynamoDB
    table: str
    other: str
    stream: str


@pytest.fixture
async def rig(endpoints: dict[str, str], unique_name: str) -> AsyncIterator[Rig]:
    clients = Clients(endpoints)
    try:
        dynamodb = await clients.json("dynamodb", REGION)
        other = f"{unique_name}-other"
        for table in (unique_name, other):
            await ensure_table(dynamodb, table, [("pk", "HASH", "S")], stream=True)
        kinesis = await clients.json("kinesis", REGION)
        assert await ensure_stream(kinesis, unique_name, shards=SHARDS)
        assert not await ensure_stream(kinesis, unique_name, shards=1)  # there: used as it is
        yield Rig(clients, dynamodb, unique_name, other, unique_name)
    finally:
        await clients.aclose()


async def write_history(dynamodb: DynamoDB, table: str, keys: int) -> dict[Change, int]:
    """Each change written, with its place in its key's history (the order ts must keep)."""
    written: dict[Change, int] = {}
    last_n: dict[str, int] = {}
    counter = itertools.count(1)

    async def one(key: str, place: int, event: str) -> None:
        if event == "REMOVE":
            await dynamodb.delete_item(TableName=table, Key={"pk": {"S": key}})
            written[Change(key, event, last_n[key])] = place
            return
        n = last_n[key] = next(counter)
        await dynamodb.put_item(TableName=table, Item={"pk": {"S": key}, "n": {"N": str(n)}})
        written[Change(key, event, n)] = place

    for place, event in enumerate(ROUNDS):
        await asyncio.gather(*(one(f"k{i:02d}", place, event) for i in range(keys)))
    return written


async def bridged(
    rig: Rig, delivery: Delivery, keys: int = KEYS
) -> tuple[dict[Change, int], list[Delivered], Counter[str]]:
    """Write the history while the bridge runs; what it wrote, and the stream read back."""
    stop = asyncio.Event()
    bridge = KinesisBridge(
        rig.clients, REGION, [rig.table, rig.other], rig.stream, stop=stop, delivery=delivery
    )
    async with asyncio.TaskGroup() as group:
        group.create_task(bridge.run())
        written = await write_history(rig.dynamodb, rig.table, keys)
        await rig.dynamodb.put_item(TableName=rig.other, Item={"pk": {"S": "k00"}})
        await bridge.drained()
        stop.set()
    delivered = await read_stream(await rig.clients.json("kinesis", REGION), rig.stream)
    return written, delivered, bridge.counts


def ts(record: Delivered) -> int:
    stamp: int = record.document["dynamodb"]["ApproximateCreationDateTime"]
    return stamp


def change_of(doc: dict[str, Any]) -> Change:
    body = doc["dynamodb"]
    image = body["OldImage"] if doc["eventName"] == "REMOVE" else body["NewImage"]
    return Change(body["Keys"]["pk"]["S"], doc["eventName"], int(image["n"]["N"]))


def assert_dynamodb_format(doc: dict[str, Any], precision: Precision) -> None:
    assert set(doc) == FIELDS
    assert doc["awsRegion"] == REGION and doc["eventSource"] == "aws:dynamodb"
    assert doc["recordFormat"] == "application/json" and doc["userIdentity"] is None
    body = doc["dynamodb"]
    assert body["ApproximateCreationDateTimePrecision"] == precision
    units = 1_000_000 if precision == "MICROSECOND" else 1_000
    assert abs(body["ApproximateCreationDateTime"] / units - time.time()) < 120
    assert isinstance(body["SizeBytes"], int) and body["Keys"] == {"pk": body["Keys"]["pk"]}
    assert ("OldImage" in body) == (doc["eventName"] != "INSERT")
    assert ("NewImage" in body) == (doc["eventName"] != "REMOVE")


async def test_every_change_arrives_at_least_once_as_kinesis_delivers(rig: Rig) -> None:
    delivery = Delivery.like_kinesis(seed=7)
    written, delivered, counts = await bridged(rig, delivery)

    ours = [d for d in delivered if d.document["tableName"] == rig.table]
    for record in ours:
        assert_dynamodb_format(record.document, "MICROSECOND")
    # Every change, none made up (a dropped one fails here).
    assert {change_of(d.document) for d in ours} == set(written)

    # Per key, ts never goes back in write order, and some changes of a key share one.
    ts_of = {change_of(d.document): ts(d) for d in ours}
    by_key: dict[str, list[Change]] = defaultdict(list)
    for change in sorted(written, key=written.__getitem__):
        by_key[change.key].append(change)
    ties = 0
    for changes in by_key.values():
        stamps = [ts_of[change] for change in changes]
        assert stamps == sorted(stamps)
        ties += len(stamps) - len(set(stamps))
    assert ties > 0  # (the bridge counts foreign records' ties too)

    # Duplicates, on every shard, in an order that is not the key's write order.
    copies = Counter(d.document["eventID"] for d in ours)
    assert max(copies.values()) > 1
    assert {d.shard_id for d in ours} == {f"shardId-{i:012d}" for i in range(SHARDS)}
    assert any(inversions(ours, written, shard) for shard in {d.shard_id for d in ours})

    # Records of other tables in the same stream: the second table's, and foreign ones.
    events = defaultdict(set)
    for record in delivered:
        events[record.document["tableName"]].add(record.document["eventID"])
    assert len(events[rig.other]) == 1
    assert len(events[delivery.foreign_table]) == counts["foreign"] > 0
    assert counts["replayed"] > 0 and counts["held"] > 0


def inversions(ours: list[Delivered], written: dict[Change, int], shard: str) -> int:
    """Pairs of one key's records on ``shard`` put in the reverse of their write order."""
    seen: dict[str, list[int]] = defaultdict(list)
    count = 0
    for record in sorted((d for d in ours if d.shard_id == shard), key=lambda d: int(d.sequence)):
        change = change_of(record.document)
        place = written[change]
        count += sum(1 for earlier in seen[change.key] if earlier > place)
        seen[change.key].append(place)
    return count


@pytest.mark.parametrize("precision", ["MICROSECOND", "MILLISECOND"])
async def test_with_every_option_off_each_change_arrives_once_in_order(
    rig: Rig, precision: Precision
) -> None:
    written, delivered, counts = await bridged(rig, Delivery(precision=precision), keys=6)

    ours = [d for d in delivered if d.document["tableName"] == rig.table]
    assert Counter(change_of(d.document) for d in ours) == Counter(list(written))
    assert len({d.document["eventID"] for d in ours}) == len(ours)
    for record in ours:
        assert_dynamodb_format(record.document, precision)
    # A key's records share a shard, in write order, each ts after the one before.
    by_key: dict[str, list[Delivered]] = defaultdict(list)
    for record in sorted(ours, key=lambda d: int(d.sequence)):
        by_key[change_of(record.document).key].append(record)
    for records in by_key.values():
        assert len({d.shard_id for d in records}) == 1
        places = [written[change_of(d.document)] for d in records]
        stamps = [ts(d) for d in records]
        assert places == sorted(places) and stamps == sorted(set(stamps))
    assert {d.document["tableName"] for d in delivered} == {rig.table, rig.other}
    assert counts["changes"] == len(written) + 1 == counts["put"]


def test_a_ttl_delete_keeps_the_service_identity_kinesis_spells_in_lower_case() -> None:
    expired = stream_record("REMOVE", {"pk": "a"}, old={"n": 3}, ttl=True)

    doc = document(expired, table="t", region=REGION, ts=5, precision="MICROSECOND")

    assert doc["userIdentity"] == {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    assert made_by_ttl(doc)
