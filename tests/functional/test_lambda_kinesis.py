"""Lambda mode behind a Kinesis event source mapping (DESIGN §4c "Lambda mode").

Source tables in us-east-1 on moto; the lab's bridge puts their changes into a Kinesis
stream in DynamoDB's format, reordered, duplicated, replayed and with ties, as a table's
Kinesis streaming destination delivers them; the local ESM driver invokes the real
``LambdaFunction`` with Kinesis events. Each test checks the eu-west-1 replica with
``verify``. Faults go through our writer seam, never into boto3.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from replicator.apply.applier import ChangeWriter
from replicator.aws.factory import Clients
from replicator.aws.json_client import DynamoDB, Kinesis
from replicator.aws.tables import ensure_table
from replicator.config.schema import Config, parse_config
from replicator.demo.kinesis_bridge import Delivery, KinesisBridge, ensure_stream
from replicator.demo.kinesis_stream import document, encode
from replicator.errors import ConfigError
from replicator.lambda_mode.batch import WRITE_ATTEMPTS
from replicator.lambda_mode.function import LambdaFunction
from replicator.lambda_mode.sources import WriterSeam
from replicator.models import Change, Outcome, TargetRef
from replicator.pipeline.dlq import decode_record
from replicator.stream.source import DynamoDBStreamSource
from replicator.tools.verify import Difference, verify
from tests.esm_driver import Context, EsmDriver, KinesisShards, Mapping, shape
from tests.lambda_rig import EU, KEY_SCHEMA, US, FailingWrites

pytestmark = pytest.mark.timeout(90)


@dataclass
class KinesisRig:
    """Source tables whose changes go to one Kinesis stream; the pairs of ``paired`` of
    them read it."""

    config: Config
    clients: Clients
    kinesis: Kinesis
    stream: str
    stream_arn: str
    sources: list[str]  # every table bridged, paired or not
    functions: list[LambdaFunction] = field(default_factory=list)

    @property
    def tables(self) -> list[str]:
        return [pair.source_table for pair in self.config.pairs]

    async def db(self, region: str = US) -> DynamoDB:
        return await self.clients.json("dynamodb", region)

    def function(self, writer_seam: WriterSeam | None = None) -> LambdaFunction:
        function = LambdaFunction(self.config, writer_seam=writer_seam)
        self.functions.append(function)
        return function

    def driver(self, function: Any, mapping: Mapping | None = None) -> EsmDriver:
        shards = KinesisShards(self.kinesis, US)
        return EsmDriver(shards, self.stream_arn, [function], mapping or Mapping(), sqs=None)

    async def put(self, table: str, key: str, version: int, **attributes: Any) -> None:
        item = {"pk": {"S": key}, "version": {"N": str(version)}, **attributes}
        await (await self.db()).put_item(TableName=table, Item=item)

    async def delete(self, table: str, key: str) -> None:
        await (await self.db()).delete_item(TableName=table, Key={"pk": {"S": key}})

    @asynccontextmanager
    async def bridge(self, delivery: Delivery | None = None) -> AsyncIterator[KinesisBridge]:
        """The bridge runs inside the block; at its end every change is in the stream."""
        stop = asyncio.Event()
        bridge = KinesisBridge(
            self.clients, US, self.sources, self.stream, stop=stop, delivery=delivery
        )
        async with asyncio.TaskGroup() as group:
            group.create_task(bridge.run())
            yield bridge
            await bridge.drained()
            stop.set()

    async def changes(self, table: str) -> list[dict[str, Any]]:
        """The table's changes from its DynamoDB stream, as JSON (for a hand-made order)."""
        source = DynamoDBStreamSource(
            await self.db(), await self.clients.json("dynamodbstreams", US)
        )
        arn = await source.stream_arn(table)
        [shard] = await source.shards(arn)
        page = await source.get_records(await source.iterator(arn, shard.shard_id, after=None))
        return [shape(record, arn) for record in page.records]

    async def send(self, payloads: list[str]) -> None:
        """Put each payload (base64 text) as one record, in this order: one shard keeps it."""
        records = [{"Data": data, "PartitionKey": f"p{n}"} for n, data in enumerate(payloads)]
        answer = await self.kinesis.put_records(StreamName=self.stream, Records=records)
        assert answer["FailedRecordCount"] == 0

    async def differences(self) -> list[Difference]:
        return (await verify(self.config, recheck_delay=0.05)).differences

    async def dead_letters(self) -> list[dict[str, Any]]:
        page = await (await self.db()).scan(TableName=self.config.dlq_table, ConsistentRead=True)
        items: list[dict[str, Any]] = page["Items"]
        return items

    async def target_item(self, table: str, key: str) -> dict[str, Any] | None:
        answer = await (await self.db(EU)).get_item(
            TableName=table, Key={"pk": {"S": key}}, ConsistentRead=True
        )
        item: dict[str, Any] | None = answer.get("Item")
        return item


@asynccontextmanager
async def kinesis_rig(
    endpoints: dict[str, str],
    name: str,
    *,
    tables: int = 1,
    paired: int = 1,
    shards: int = 1,
    max_concurrency: int = 32,
    mode: str = "one-way",
) -> AsyncIterator[KinesisRig]:
    """``tables`` source tables (``<name>-0``...) whose changes go to Kinesis stream
    ``<name>``; the first ``paired`` are replicated to eu-west-1 from it, each pair naming
    the stream (the first by ARN, the others by name)."""
    clients = Clients(endpoints)
    try:
        kinesis = await clients.json("kinesis", US)
        await ensure_stream(kinesis, name, shards=shards)
        summary = await kinesis.describe_stream_summary(StreamName=name)
        stream_arn = summary["StreamDescriptionSummary"]["StreamARN"]
        names = [f"{name}-{n}" for n in range(tables)]
        for table in names:
            await ensure_table(await clients.json("dynamodb", US), table, KEY_SCHEMA, stream=True)
            await ensure_table(
                await clients.json("dynamodb", EU), table, KEY_SCHEMA, ttl_attribute="_rep_expires"
            )
        config = parse_config(
            {
                "source_region": US,
                "mode": mode,
                "endpoints": {region: endpoints[region] for region in (US, EU)},
                "control_table": f"{name}-control",
                "dlq_table": f"{name}-dlq",
                "pairs": [
                    {
                        "source_table": table,
                        "targets": [{"region": EU, "table": table}],
                        "kinesis_stream": stream_arn if n == 0 else name,
                        "max_concurrency": max_concurrency,
                    }
                    for n, table in enumerate(names[:paired])
                ],
                "web": {"enabled": False},
            }
        )
        rig = KinesisRig(config, clients, kinesis, name, stream_arn, names)
        try:
            yield rig
        finally:
            for function in rig.functions:
                await asyncio.to_thread(function.close)
    finally:
        await clients.aclose()


async def workload(rig: KinesisRig, table: str, keys: int) -> None:
    """Inserts, updates, deletes and re-creates with the version reset to 1."""
    for n in range(keys):
        await rig.put(table, f"k{n}", 1, data={"S": f"one {n}"})
    for n in range(0, keys, 2):
        await rig.put(table, f"k{n}", 2, data={"S": f"two {n}"})
    for n in range(0, keys, 3):
        await rig.delete(table, f"k{n}")
    for n in range(0, keys, 6):
        await rig.put(table, f"k{n}", 1, data={"S": f"again {n}"})


def failures(response: Any) -> list[str]:
    return [f["itemIdentifier"] for f in response["batchItemFailures"]]


def data_of(record: dict[str, Any]) -> dict[str, Any]:
    """The document DynamoDB wrote, from a record as the mapping delivers it."""
    document: dict[str, Any] = json.loads(base64.b64decode(record["kinesis"]["data"]))
    return document


@pytest.fixture
async def rig(endpoints: dict[str, str], unique_name: str) -> AsyncIterator[KinesisRig]:
    async with kinesis_rig(endpoints, unique_name) as rig:
        yield rig


async def test_a_stream_delivered_as_kinesis_does_converges(
    endpoints: dict[str, str], unique_name: str
) -> None:
    # Ties, random shards, duplicates, held-back records, replays and another table's
    # records, over two shards.
    async with kinesis_rig(endpoints, unique_name, shards=2) as rig:
        [table] = rig.tables
        async with rig.bridge(Delivery.like_kinesis(seed=5)) as bridge:
            await workload(rig, table, keys=40)
        counts = bridge.counts
        assert min(counts[made] for made in ("ties", "duplicate", "held", "foreign")) > 0

        function = rig.function()
        driver = rig.driver(function, Mapping(batch_size=25))
        await driver.drain()

        assert len(driver.invocations) >= 4
        assert [failures(call.response) for call in driver.invocations] == [[]] * len(
            driver.invocations
        )
        assert await rig.differences() == []
        skipped = function.metrics.counts["records_skipped"]
        assert skipped[(("source_table", table), ("reason", "other-table"))] >= counts["foreign"]


async def test_active_active_deletes_leave_tombstones_here_and_there(
    endpoints: dict[str, str], unique_name: str
) -> None:
    async with kinesis_rig(endpoints, unique_name, mode="active-active") as rig:
        [table] = rig.tables
        async with rig.bridge(Delivery.like_kinesis(seed=3)):
            for n in range(12):
                await rig.put(table, f"k{n}", 1)
                await rig.put(table, f"k{n}", 2)
            for n in range(0, 12, 3):
                await rig.delete(table, f"k{n}")
            await rig.put(table, "k0", 3)  # re-created: the version goes on (§3)
        function = rig.function()
        driver = rig.driver(function, Mapping(batch_size=20))
        await driver.drain()
        async with rig.bridge():  # the local tombstones' own records come back: skipped
            pass
        await driver.drain()

        assert all(failures(call.response) == [] for call in driver.invocations)
        for n in (3, 6, 9):
            for region in (US, EU):
                answer = await (await rig.db(region)).get_item(
                    TableName=table, Key={"pk": {"S": f"k{n}"}}, ConsistentRead=True
                )
                stored = answer["Item"]
                assert stored["_rep_deleted"] == {"BOOL": True} and stored["version"] == {"N": "2"}
                assert "_rep_ts" in stored and "_rep_seq" not in stored
        assert await rig.differences() == []


async def test_a_tie_delivered_in_write_order_is_settled_by_the_source_item(
    rig: KinesisRig, capsys: pytest.CaptureFixture[str]
) -> None:
    [table] = rig.tables
    await rig.put(table, "tie", 1, data={"S": "first"})
    await rig.put(table, "tie", 2, data={"S": "second"})
    # Stamped alike (a tie), and the earlier write arrives first, then again after the
    # later one: the stored eventID alone cannot say which write is the later.
    first, second = (
        encode(
            document(r, table=table, region=US, ts=1_765_000_000_000_000, precision="MICROSECOND")
        )
        for r in await rig.changes(table)
    )
    await rig.send([first, second, first])

    function = rig.function()
    driver = rig.driver(function)
    await driver.drain()

    [call] = driver.invocations
    assert failures(call.response) == []
    tie = await rig.target_item(table, "tie")
    assert tie is not None and tie["data"] == {"S": "second"}
    reads = sum(function.metrics.counts["kinesis_tie_reads"].values())
    assert reads >= 1
    assert await rig.differences() == []
    # CloudWatch sees them too: an EMF document per source table, without a target.
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    emitted = [d for d in documents if "KinesisTieReads" in d]
    # One read is the value 1; several in one invocation are a list of 1s.
    assert (
        sum(
            sum(d["KinesisTieReads"])
            if isinstance(d["KinesisTieReads"], list)
            else d["KinesisTieReads"]
            for d in emitted
        )
        == reads
    )
    assert {(d["source_table"], "target" in d) for d in emitted} == {(table, False)}


async def test_records_of_another_table_never_reach_the_target(
    endpoints: dict[str, str], unique_name: str
) -> None:
    # Two tables stream into one Kinesis stream; only the first is paired.
    async with kinesis_rig(endpoints, unique_name, tables=2, paired=1) as rig:
        mine, theirs = rig.sources
        async with rig.bridge():
            await rig.put(mine, "mine", 1)
            await rig.put(theirs, "theirs", 1)
            await rig.put(theirs, "mine", 7, data={"S": "not this pair's"})

        function = rig.function()
        driver = rig.driver(function)
        await driver.drain()

        [call] = driver.invocations
        assert failures(call.response) == []
        assert await rig.target_item(mine, "theirs") is None
        stored = await rig.target_item(mine, "mine")
        assert stored is not None and stored["version"] == {"N": "1"} and "data" not in stored
        assert await rig.differences() == []
        assert function.metrics.total("applied") == 1
        skipped = function.metrics.counts["records_skipped"]
        assert skipped[(("source_table", mine), ("reason", "other-table"))] == 2


async def test_a_record_whose_data_is_not_json_is_dead_lettered_not_reported(
    rig: KinesisRig,
) -> None:
    [table] = rig.tables
    for n in range(4):
        await rig.put(table, f"k{n}", 1)
    payloads = [
        encode(
            document(r, table=table, region=US, ts=1_765_000_000_000_000, precision="MICROSECOND")
        )
        for r in await rig.changes(table)
    ]
    await rig.send([*payloads[:2], base64.b64encode(b"this is not JSON").decode(), *payloads[2:]])

    function = rig.function()
    driver = rig.driver(function)
    await driver.drain()

    [call] = driver.invocations
    assert failures(call.response) == []
    [entry] = await rig.dead_letters()
    poison = call.records[2]
    assert entry["sequence_number"]["S"] == poison["kinesis"]["sequenceNumber"]
    assert "not JSON" in entry["reason"]["S"]
    assert decode_record(entry) == poison
    assert await rig.differences() == []
    assert function.metrics.total("applied") == 4


async def test_a_stream_shared_by_two_pairs_reports_the_first_record_either_lacks(
    endpoints: dict[str, str], unique_name: str
) -> None:
    # One write at a time per target, so each target's progress follows the batch's order.
    async with kinesis_rig(endpoints, unique_name, tables=2, paired=2, max_concurrency=1) as rig:
        second = rig.tables[1]
        async with rig.bridge():
            for n in range(10):
                for table in rig.tables:
                    await rig.put(table, f"k{n}", 1, data={"S": table})
        written: dict[str, Written] = {}

        def recorded(target: TargetRef, writer: ChangeWriter) -> ChangeWriter:
            # The second pair's target fails its 4th write, for good within an invocation.
            inner = FailingWrites(writer, after=3, times=WRITE_ATTEMPTS)
            written[target.table] = Written(inner if target.table == second else writer)
            return written[target.table]

        function = rig.function(writer_seam=recorded)
        had: dict[str, set[str]] = {}

        def first_then_look(event: dict[str, Any], context: Any) -> Any:
            response = function(event, context)
            if not had:  # what the targets held when the first invocation answered
                had.update({t: set(w.keys) for t, w in written.items()})
            return response

        driver = rig.driver(first_then_look)
        await driver.drain()

        call, retry = driver.invocations
        assert had[second] == {"k0", "k1", "k2"}
        # The earliest record, in the batch's order, whose change a target lacked: the
        # second table's k3, unless that failure stopped the first pair earlier.
        lacking = [
            record["kinesis"]["sequenceNumber"]
            for record in call.records
            if (doc := data_of(record))["dynamodb"]["Keys"]["pk"]["S"] not in had[doc["tableName"]]
        ]
        assert failures(call.response) == [lacking[0]]
        sequences = call.sequence_numbers
        assert retry.sequence_numbers == sequences[sequences.index(lacking[0]) :]
        assert failures(retry.response) == []
        assert await rig.differences() == []


class Written:
    """Our writer seam: the keys of the writes that went through."""

    def __init__(self, inner: ChangeWriter) -> None:
        self.inner = inner
        self.keys: list[str] = []

    async def put(self, change: Change, *, now: float) -> Outcome:
        outcome = await self.inner.put(change, now=now)
        self.keys.append(change.keys["pk"]["S"])
        return outcome


async def one_record(rig: KinesisRig, table: str) -> dict[str, Any]:
    """Item k of ``table`` written once, and its record as a Kinesis mapping delivers it."""
    async with rig.bridge():
        await rig.put(table, "k", 1)
    shards = KinesisShards(rig.kinesis, US)
    [shard] = await shards.shards(rig.stream_arn)
    start = await shards.iterator(rig.stream_arn, shard.shard_id, after=None)
    [record] = (await shards.get_records(start)).records
    return record


async def test_a_mapping_wired_to_a_stream_no_pair_reads_is_a_config_error(
    rig: KinesisRig,
) -> None:
    [table] = rig.tables
    record = await one_record(rig, table)
    other = rig.stream_arn.replace(":stream/", ":stream/other-")
    [change] = await rig.changes(table)
    function = rig.function()

    # A Kinesis stream no pair names, and the table's own DynamoDB stream.
    for event, says in (
        (
            {"Records": [{**record, "eventSourceARN": other}]},
            "Kinesis stream 'other-.*kinesis_stream",
        ),
        ({"Records": [change]}, f"table '{table}' reads Kinesis stream"),
    ):
        with pytest.raises(ConfigError, match=says):
            await asyncio.to_thread(function, event, Context(timeout_seconds=10))
    assert await rig.target_item(table, "k") is None


async def test_a_cold_start_refuses_a_tombstone_ttl_not_longer_than_the_retention(
    rig: KinesisRig,
) -> None:
    [table] = rig.tables
    await rig.kinesis.call(
        "IncreaseStreamRetentionPeriod", {"StreamName": rig.stream, "RetentionPeriodHours": 200}
    )
    record = {**await one_record(rig, table), "eventSourceARN": rig.stream_arn}
    function = rig.function()

    # The default tombstone TTL (7 d = 168 h) is shorter than the stream's 200 h.
    says = "tombstone_ttl: 604800 s .* retention of 200 h"
    with pytest.raises(ConfigError, match=says):
        await asyncio.to_thread(function, {"Records": [record]}, Context(timeout_seconds=10))
    assert await rig.target_item(table, "k") is None
