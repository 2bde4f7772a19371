"""Poison records never stop a pipeline; our own bad requests always do (DESIGN §5).

The stream is ``FakeStream``; the writes, the DLQ and the checkpoints are the real
ones, on the embedded moto backend, so DynamoDB's own refusals are what is tested.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from replicator.apply import writer as writer_module
from replicator.apply.applier import TargetApplier
from replicator.apply.condition import Condition
from replicator.apply.writer import ConditionalWriter
from replicator.aws.factory import Clients
from replicator.aws.tables import CONTROL_KEY, ensure_table
from replicator.errors import RequestError
from replicator.models import Meta, Mode, TargetRef
from replicator.pipeline.checkpoint import CheckpointStore
from replicator.pipeline.dlq import DeadLetterQueue, decode_record
from replicator.pipeline.itemsize import MAX_ITEM_BYTES, item_size
from replicator.pipeline.pair import PairPipeline
from replicator.stream.fake import FakeStream
from replicator.stream.fake_records import wire
from replicator.telemetry.metrics import Metrics
from tests.functional.test_pipeline_faults import TINY

HERE, THERE = "us-east-1", "eu-west-1"
META = Meta(version="version")
pytestmark = pytest.mark.timeout(60)


@dataclass
class Pair:
    stream: FakeStream
    clients: Clients
    target: TargetRef
    control_table: str
    dlq_table: str

    async def pipeline(self, metrics: Metrics) -> PairPipeline:
        home = await self.clients.json("dynamodb", HERE)
        stop = asyncio.Event()
        writer = ConditionalWriter(
            await self.clients.put_client(THERE),
            self.target.table,
            region=THERE,
            meta=META,
            mode=Mode.ONE_WAY,
            tombstone_ttl_seconds=3600,
        )
        applier = TargetApplier(
            writer,
            DeadLetterQueue(home, self.dlq_table),
            target=self.target,
            metrics=metrics,
            max_concurrency=4,
            backoff=TINY,
            stop=stop,
        )
        return PairPipeline(
            source_table=self.stream.table,
            region=HERE,
            meta=META,
            source=self.stream,
            appliers=[applier],
            checkpoints=CheckpointStore(home, self.control_table),
            metrics=metrics,
            stop=stop,
            discovery_interval=0.05,
            idle_backoff=TINY,
            retry_backoff=TINY,
        )

    async def target_items(self) -> dict[str, dict[str, Any]]:
        client = await self.clients.json("dynamodb", THERE)
        page = await client.scan(TableName=self.target.table, ConsistentRead=True)
        return {item["pk"]["S"]: item for item in page["Items"]}

    async def dead_letters(self) -> list[dict[str, Any]]:
        client = await self.clients.json("dynamodb", HERE)
        page = await client.scan(TableName=self.dlq_table, ConsistentRead=True)
        return sorted(page["Items"], key=lambda entry: entry["sk"]["S"])

    async def checkpoint(self) -> str | None:
        home = await self.clients.json("dynamodb", HERE)
        found = await CheckpointStore(home, self.control_table).load(self.stream.table)
        return next(iter(found.values())).sequence_number if found else None


@pytest.fixture
async def pair(endpoints: dict[str, str], unique_name: str) -> AsyncIterator[Pair]:
    clients = Clients(endpoints)
    try:
        home = await clients.json("dynamodb", HERE)
        await ensure_table(home, f"{unique_name}-control", CONTROL_KEY)
        await ensure_table(home, f"{unique_name}-dlq", CONTROL_KEY)
        await ensure_table(
            await clients.json("dynamodb", THERE), unique_name, [("pk", "HASH", "S")]
        )
        yield Pair(
            FakeStream(unique_name, region=HERE),
            clients,
            TargetRef(THERE, unique_name),
            f"{unique_name}-control",
            f"{unique_name}-dlq",
        )
    finally:
        await clients.aclose()


def just_fits_the_source(key: str, *, compressible: bool) -> dict[str, Any]:
    """An item DynamoDB takes in the source, 40 bytes under the limit: no room for metadata."""
    item: dict[str, Any] = {"pk": key, "version": 1, "data": ""}
    room = MAX_ITEM_BYTES - 40 - item_size(wire(item))
    item["data"] = "x" * room if compressible else os.urandom(room // 2).hex().ljust(room, "0")
    assert item_size(wire(item)) == MAX_ITEM_BYTES - 40
    return item


async def test_an_item_too_large_once_metadata_is_added_goes_to_the_dlq_and_the_rest_replicates(
    pair: Pair,
) -> None:
    stream, metrics = pair.stream, Metrics(source_region=HERE)
    big, noisy = (
        just_fits_the_source("big", compressible=True),
        just_fits_the_source("noisy", compressible=False),
    )
    records = [
        stream.insert({"pk": "a"}, {"version": 1}),
        stream.insert({"pk": "big"}, big),
        stream.modify({"pk": "noisy"}, noisy, {**noisy, "version": 2}),
        stream.insert({"pk": "b"}, {"version": 1}),
    ]
    pipeline = await pair.pipeline(metrics)
    task = asyncio.create_task(pipeline.run())
    try:
        last = records[-1]["dynamodb"]["SequenceNumber"]
        async with asyncio.timeout(30):
            while await pair.checkpoint() != last:
                assert not task.done(), task.exception()
                await asyncio.sleep(0.05)
    finally:
        pipeline.stop.set()
        async with asyncio.timeout(10):
            await task
        metrics.shutdown()

    assert set(await pair.target_items()) == {"a", "b"}
    whole, digested = await pair.dead_letters()
    for entry in (whole, digested):
        assert "Item size has exceeded the maximum allowed size" in entry["reason"]["S"]
    assert decode_record(whole)["dynamodb"]["NewImage"]["data"]["S"] == big["data"]
    assert digested["images_omitted"] == {"BOOL": True}
    assert "NewImage_sha256" in digested and "OldImage_sha256" in digested
    assert digested["sequence_number"]["S"] == records[2]["dynamodb"]["SequenceNumber"]
    assert metrics.total("dead_lettered") == 2


async def test_a_validation_error_of_our_own_request_stops_loudly_and_dead_letters_nothing(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    built = writer_module.build_condition

    def with_redundant_parentheses(*args: Any, **kwargs: Any) -> Condition:
        # A bug in the condition builder: DynamoDB refuses redundant parentheses.
        condition = built(*args, **kwargs)
        return Condition(f"(({condition.expression}))", condition.names, condition.values)

    monkeypatch.setattr(writer_module, "build_condition", with_redundant_parentheses)
    stream, metrics = pair.stream, Metrics(source_region=HERE)
    stream.insert({"pk": "a"}, {"version": 1, "secret": "value-never-logged"})
    pipeline = await pair.pipeline(metrics)
    try:
        with caplog.at_level(logging.CRITICAL), pytest.raises(ExceptionGroup) as raised:
            async with asyncio.timeout(30):
                await pipeline.run()
    finally:
        metrics.shutdown()

    assert raised.group_contains(RequestError)
    [logged] = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert "BUG" in logged and "request shape" in logged and "ConditionExpression" in logged
    assert "'secret': 'S'" in logged and "value-never-logged" not in logged
    assert await pair.dead_letters() == [], "a bug of ours must never be dead-lettered"
    assert await pair.checkpoint() is None, "nothing may be checkpointed past it"
    assert await pair.target_items() == {}
