"""KinesisStreamSource against the embedded backend (moto server's Kinesis)."""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from replicator.aws.backoff import Backoff
from replicator.aws.factory import Clients
from replicator.aws.json_client import Kinesis
from replicator.errors import ResourceNotFound
from replicator.stream.kinesis import KinesisStreamSource
from replicator.stream.positions import at_time
from replicator.stream.reader import ReaderHooks, ShardReader
from tests.kinesis_changes import REGION, history, needs_kinesis_decode, put_changes
from tests.stub_kinesis import StubKinesis

pytestmark = pytest.mark.timeout(30)

FAST = Backoff(base=0.01, cap=0.05)


@pytest.fixture
async def kinesis(endpoints: dict[str, str]) -> AsyncIterator[Kinesis]:
    clients = Clients(endpoints)
    try:
        yield await clients.json("kinesis", REGION)
    finally:
        await clients.aclose()


async def stream(kinesis: Kinesis, name: str, shards: int) -> KinesisStreamSource:
    await kinesis.create_stream(StreamName=name, ShardCount=shards)
    return KinesisStreamSource(kinesis, name)


async def read_shard(source: KinesisStreamSource, shard_id: str, after: str | None) -> list[Any]:
    page = await source.get_records(await source.iterator("", shard_id, after=after))
    return page.records


async def test_records_come_in_the_shape_of_a_lambda_kinesis_event(
    kinesis: Kinesis, unique_name: str
) -> None:
    source = await stream(kinesis, unique_name, shards=2)
    documents = history("orders", ts=1_700_000_000_000_000)
    placed = await put_changes(kinesis, unique_name, documents, rng=random.Random(7))

    arn = await source.stream_arn("orders")
    assert arn.endswith(f":stream/{unique_name}")
    shards = await source.shards(arn)
    assert sorted(s.shard_id for s in shards) == sorted({p["ShardId"] for p in placed})
    read: dict[str, dict[str, Any]] = {}
    for shard in shards:
        page = await source.get_records(await source.iterator(arn, shard.shard_id, after=None))
        assert page.millis_behind_latest == 0
        read |= {r["eventID"]: r for r in page.records}

    assert len(read) == len(documents)
    for document, where in zip(documents, placed, strict=True):
        record = read[f"{where['ShardId']}:{where['SequenceNumber']}"]
        assert record.keys() == {"eventSource", "eventID", "kinesis"}
        assert record["eventSource"] == "aws:kinesis"
        body = record["kinesis"]
        assert body["sequenceNumber"] == where["SequenceNumber"]
        assert body["partitionKey"] == json.dumps(document["dynamodb"]["Keys"], sort_keys=True)
        assert isinstance(body["approximateArrivalTimestamp"], float)
        # Data stays base64 text: the decoder (the same as Lambda mode's) opens it.
        assert json.loads(base64.b64decode(body["data"])) == document


async def test_shards_are_listed_with_their_lineage_after_resharding(
    kinesis: Kinesis, unique_name: str
) -> None:
    source = await stream(kinesis, unique_name, shards=2)
    await put_changes(kinesis, unique_name, history("orders", ts=1), rng=random.Random(1))
    # The lab's resharding (the product never reshards): each shard splits in two.
    await kinesis.call(
        "UpdateShardCount",
        {"StreamName": unique_name, "TargetShardCount": 4, "ScalingType": "UNIFORM_SCALING"},
    )

    shards = await source.shards(await source.stream_arn("orders"))
    parents = [s for s in shards if s.parent_id is None]
    children = [s for s in shards if s.parent_id is not None]
    assert len(parents) == 2 and all(s.closed for s in parents)
    assert len(children) == 4 and not any(s.closed for s in children)
    assert {s.parent_id for s in children} == {s.shard_id for s in parents}


async def test_an_at_timestamp_position_reads_what_arrived_from_that_time_on(
    kinesis: Kinesis, unique_name: str
) -> None:
    source = await stream(kinesis, unique_name, shards=1)
    (shard,) = await source.shards(await source.stream_arn("orders"))
    rng = random.Random(3)
    documents = history("orders", ts=1)
    await put_changes(kinesis, unique_name, documents[:2], rng=rng)
    first = await read_shard(source, shard.shard_id, None)
    # Put until a record arrives in a later millisecond than the first ones: a condition
    # on moto's clock, bounded by the test's timeout.
    while True:
        await put_changes(kinesis, unique_name, documents[2:], rng=rng)
        every = await read_shard(source, shard.shard_id, None)
        since = every[-1]["kinesis"]["approximateArrivalTimestamp"]
        if since > first[-1]["kinesis"]["approximateArrivalTimestamp"]:
            break

    replayed = await read_shard(source, shard.shard_id, at_time(since))
    expected = [r for r in every if r["kinesis"]["approximateArrivalTimestamp"] >= since]
    assert replayed == expected
    assert 0 < len(replayed) < len(every)


@needs_kinesis_decode
async def test_a_reader_started_at_a_time_then_stands_at_a_sequence_number(
    kinesis: Kinesis, unique_name: str
) -> None:
    source = await stream(kinesis, unique_name, shards=1)
    (shard,) = await source.shards(await source.stream_arn("orders"))
    await put_changes(kinesis, unique_name, history("orders", ts=1), rng=random.Random(5))
    every = await read_shard(source, shard.shard_id, None)
    since = every[0]["kinesis"]["approximateArrivalTimestamp"]

    stop = asyncio.Event()
    reader = ShardReader(
        source, "", shard.shard_id, after=at_time(since), stop=stop, idle_backoff=FAST
    )
    batch = await anext(reader.batches())
    stop.set()
    assert batch.records == every
    # Where the next checkpoint goes: AFTER_SEQUENCE_NUMBER from now on.
    assert reader.position == batch.last_sequence == every[-1]["kinesis"]["sequenceNumber"]


async def test_a_missing_stream_says_which_and_how_to_create_it(
    kinesis: Kinesis, unique_name: str
) -> None:
    source = KinesisStreamSource(kinesis, "nope")
    with pytest.raises(ResourceNotFound) as caught:
        await source.stream_arn("orders")
    message = str(caught.value)
    assert "Kinesis stream 'nope' does not exist in us-east-1" in message
    assert "create-stream" in message and "enable-kinesis-streaming-destination" in message


# -- what moto does not do: a stub Kinesis on loopback ------------------------------------------


async def test_list_shards_pages_on_by_next_token_alone() -> None:
    stub = StubKinesis(["shardId-0", "shardId-1", "shardId-2"])
    async with stub.serving() as endpoint:
        clients = Clients({REGION: endpoint})
        try:
            source = KinesisStreamSource(await clients.json("kinesis", REGION), "orders")
            shards = await source.shards("arn:aws:kinesis:us-east-1:123456789012:stream/orders")
        finally:
            await clients.aclose()
    assert [s.shard_id for s in shards] == ["shardId-0", "shardId-1", "shardId-2"]
    # AWS refuses the stream's name beside a NextToken: the token alone names the stream.
    assert [body for _, body in stub.requests] == [
        {"StreamName": "orders"},
        {"NextToken": "1"},
        {"NextToken": "2"},
    ]


async def test_a_throttled_shard_read_is_backed_off_by_the_retry_policy_and_retried() -> None:
    stub = StubKinesis(["shardId-0"], throttles=2)
    retried: list[str] = []
    async with stub.serving() as endpoint:
        clients = Clients({REGION: endpoint})
        try:
            source = KinesisStreamSource(await clients.json("kinesis", REGION), "orders")
            stop = asyncio.Event()
            reader = ShardReader(
                source,
                "",
                "shardId-0",
                stop=stop,
                hooks=ReaderHooks(on_retry=retried.append),
                retry_backoff=FAST,
            )
            batch = await anext(reader.batches())
            stop.set()
        finally:
            await clients.aclose()
    assert [r["eventID"] for r in batch.records] == ["shardId-0:1"]
    assert retried == ["throttled", "throttled"]
    assert [operation for operation, _ in stub.requests].count("GetRecords") == 3


async def test_an_expired_iterator_is_renewed_after_the_last_sequence_delivered() -> None:
    stub = StubKinesis(["shardId-0"], expiries=1)
    async with stub.serving() as endpoint:
        clients = Clients({REGION: endpoint})
        try:
            source = KinesisStreamSource(await clients.json("kinesis", REGION), "orders")
            stop = asyncio.Event()
            reader = ShardReader(source, "", "shardId-0", after="41", stop=stop)
            batch = await anext(reader.batches())
            stop.set()
        finally:
            await clients.aclose()
    assert [r["eventID"] for r in batch.records] == ["shardId-0:1"]
    seeks = [body for operation, body in stub.requests if operation == "GetShardIterator"]
    assert seeks == 2 * [
        {
            "StreamName": "orders",
            "ShardId": "shardId-0",
            "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
            "StartingSequenceNumber": "41",
        }
    ]
