"""Lambda mode behind a Kinesis event source mapping (DESIGN §4c "Lambda mode").

Source tables in us-east-1 on moto; their changes reach a Kinesis stream in DynamoDB's
format, reordered, duplicated and with ties, as a table's Kinesis streaming destination
delivers them; the local ESM driver invokes the real ``LambdaFunction`` with Kinesis
events. Each test checks the eu-west-1 replica with ``verify``. Faults go through our
writer seam, never into boto3.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from replicator.apply.applier import ChangeWriter
from replicator.aws.factory import Clients
from replicator.aws.json_client import DynamoDB, Kinesis
from replicator.aws.tables import ensure_table
from replicator.config.schema import Config, parse_config
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
    """Source tables whose changes go to one Kinesis stream, a function reading it."""

    config: Config
    clients: Clients
    kinesis: Kinesis
    stream_arn: str
    functions: list[LambdaFunction] = field(default_factory=list)
    _read: dict[str, str | None] = field(default_factory=dict)  # per table: last sequence

    @property
    def tables(self) -> list[str]:
        return [pair.source_table for pair in self.config.pairs]

    async def db(self, region: str = US) -> DynamoDB:
        return await self.clients.json("dynamodb", region)

    def function(self, writer_seam: WriterSeam | None = None) -> LambdaFunction:
        function = LambdaFunction(self.config, writer_seam=writer_seam)
        self.functions.append(function)
        return function

    def driver(self, function: LambdaFunction, mapping: Mapping | None = None) -> EsmDriver:
        shards = KinesisShards(self.kinesis, US)
        return EsmDriver(shards, self.stream_arn, [function], mapping or Mapping(), sqs=None)

    async def put(self, table: str, key: str, version: int, **attributes: Any) -> None:
        item = {"pk": {"S": key}, "version": {"N": str(version)}, **attributes}
        await (await self.db()).put_item(TableName=table, Item=item)

    async def delete(self, table: str, key: str) -> None:
        await (await self.db()).delete_item(TableName=table, Key={"pk": {"S": key}})

    async def changes(self, table: str) -> list[dict[str, Any]]:
        """The table's changes since the last call, from its DynamoDB stream, as JSON."""
        db = await self.db()
        source = DynamoDBStreamSource(db, await self.clients.json("dynamodbstreams", US))
        arn = await source.stream_arn(table)
        [shard] = await source.shards(arn)
        iterator: str | None = await source.iterator(
            arn, shard.shard_id, after=self._read.get(table)
        )
        found: list[dict[str, Any]] = []
        while iterator is not None:
            page = await source.get_records(iterator)
            if not page.records:
                break
            found += [shape(record, arn) for record in page.records]
            iterator = page.next_iterator
        if found:
            self._read[table] = found[-1]["dynamodb"]["SequenceNumber"]
        return found

    async def send(self, payloads: Sequence[bytes]) -> None:
        """Put each payload as one Kinesis record, in this order (one shard: kept)."""
        records = [
            {"Data": base64.b64encode(data).decode(), "PartitionKey": f"p{n}"}
            for n, data in enumerate(payloads)
        ]
        for start in range(0, len(records), 500):
            answer = await self.kinesis.put_records(
                StreamName=self.stream_arn.rsplit("/", 1)[-1], Records=records[start : start + 500]
            )
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
    endpoints: dict[str, str], name: str, *, tables: int = 1, max_concurrency: int = 32
) -> AsyncIterator[KinesisRig]:
    """``tables`` source tables (``<name>-0``...), each replicated to eu-west-1 from one
    Kinesis stream ``<name>-stream`` that every pair names (by name, the first by ARN)."""
    clients = Clients(endpoints)
    try:
        kinesis = await clients.json("kinesis", US)
        stream = f"{name}-stream"
        await kinesis.create_stream(StreamName=stream, ShardCount=1)
        summary = await kinesis.describe_stream_summary(StreamName=stream)
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
                "endpoints": {region: endpoints[region] for region in (US, EU)},
                "control_table": f"{name}-control",
                "dlq_table": f"{name}-dlq",
                "pairs": [
                    {
                        "source_table": table,
                        "targets": [{"region": EU, "table": table}],
                        "kinesis_stream": stream_arn if n == 0 else stream,
                        "max_concurrency": max_concurrency,
                    }
                    for n, table in enumerate(names)
                ],
                "web": {"enabled": False},
            }
        )
        rig = KinesisRig(config, clients, kinesis, stream_arn)
        try:
            yield rig
        finally:
            for function in rig.functions:
                await asyncio.to_thread(function.close)
    finally:
        await clients.aclose()


class Stamps:
    """ts as DynamoDB stamps a key's changes: microseconds, never decreasing per key."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def next(self, record: dict[str, Any], *, tie: bool = False) -> int:
        key = json.dumps(record["dynamodb"]["Keys"], sort_keys=True)
        previous = self._last.get(key)
        if tie and previous is not None:
            return previous
        ts = int(record["dynamodb"]["ApproximateCreationDateTime"] * 1_000_000)
        ts = ts if previous is None else max(ts, previous + 1)
        self._last[key] = ts
        return ts


def document(record: dict[str, Any], table: str, ts: int) -> bytes:
    """The JSON document DynamoDB writes to a Kinesis stream for one change of ``table``."""
    body = record["dynamodb"]
    dynamodb = {
        "ApproximateCreationDateTime": ts,
        "ApproximateCreationDateTimePrecision": "MICROSECOND",
        "Keys": body["Keys"],
        "SizeBytes": body.get("SizeBytes", 1),
    }
    for image in ("NewImage", "OldImage"):
        if image in body:
            dynamodb[image] = body[image]
    return json.dumps(
        {
            "awsRegion": US,
            "eventID": record["eventID"],
            "eventName": record["eventName"],
            "userIdentity": record.get("userIdentity"),
            "recordFormat": "application/json",
            "tableName": table,
            "dynamodb": dynamodb,
            "eventSource": "aws:dynamodb",
        }
    ).encode()


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


@pytest.fixture
async def rig(endpoints: dict[str, str], unique_name: str) -> AsyncIterator[KinesisRig]:
    async with kinesis_rig(endpoints, unique_name) as rig:
        yield rig


async def test_a_reordered_duplicated_stream_with_a_tie_converges(rig: KinesisRig) -> None:
    [table] = rig.tables
    await workload(rig, table, keys=24)
    # A tie: two changes of one key stamped alike.
    await rig.put(table, "tie", 1, data={"S": "first"})
    await rig.put(table, "tie", 2, data={"S": "second"})
    stamps, payloads = Stamps(), []
    for record in await rig.changes(table):
        is_tie = record["dynamodb"].get("NewImage", {}).get("data") == {"S": "second"}
        payloads.append(document(record, table, stamps.next(record, tie=is_tie)))
    rng = random.Random(7)
    delivered = payloads + rng.sample(payloads, len(payloads) // 4)  # duplicates
    rng.shuffle(delivered)
    # The tie's earlier write goes first: only reading the source tells the later one wins.
    delivered.sort(key=lambda p: b'"first"' not in p)
    await rig.send(delivered)

    function = rig.function()
    driver = rig.driver(function, Mapping(batch_size=25))
    await driver.drain()

    assert len(driver.invocations) >= 3
    assert [failures(call.response) for call in driver.invocations] == [[]] * len(
        driver.invocations
    )
    assert await rig.differences() == []
    tie = await rig.target_item(table, "tie")
    assert tie is not None and tie["data"] == {"S": "second"}
    assert sum(function.metrics.counts["kinesis_tie_reads"].values()) >= 1


async def test_records_of_another_table_never_reach_the_target(rig: KinesisRig) -> None:
    [table] = rig.tables
    await rig.put(table, "mine", 1)
    [mine] = await rig.changes(table)
    stamps = Stamps()
    foreign = {**mine, "dynamodb": {**mine["dynamodb"], "Keys": {"pk": {"S": "theirs"}}}}
    foreign["dynamodb"]["NewImage"] = {"pk": {"S": "theirs"}, "version": {"N": "1"}}
    await rig.send(
        [
            document(foreign, "another-table", stamps.next(foreign)),
            document(mine, table, stamps.next(mine)),
        ]
    )

    function = rig.function()
    driver = rig.driver(function)
    await driver.drain()

    [call] = driver.invocations
    assert failures(call.response) == []
    assert await rig.target_item(table, "theirs") is None
    assert await rig.target_item(table, "mine") is not None
    assert await rig.differences() == []
    assert function.metrics.total("applied") == 1
    skipped = function.metrics.counts["records_skipped"]
    assert skipped[(("source_table", table), ("reason", "other-table"))] == 1


async def test_a_record_whose_data_is_not_json_is_dead_lettered_not_reported(
    rig: KinesisRig,
) -> None:
    [table] = rig.tables
    for n in range(4):
        await rig.put(table, f"k{n}", 1)
    stamps = Stamps()
    payloads = [document(r, table, stamps.next(r)) for r in await rig.changes(table)]
    await rig.send([*payloads[:2], b"this is not JSON", *payloads[2:]])

    function = rig.function()
    driver = rig.driver(function)
    await driver.drain()

    [call] = driver.invocations
    assert failures(call.response) == []
    [entry] = await rig.dead_letters()
    poison = call.records[2]
    assert entry["sequence_number"]["S"] == poison["kinesis"]["sequenceNumber"]
    assert "JSON" in entry["reason"]["S"]
    assert decode_record(entry) == poison
    assert await rig.differences() == []
    assert function.metrics.total("applied") == 4


async def test_a_stream_shared_by_two_pairs_reports_the_first_record_either_lacks(
    endpoints: dict[str, str], unique_name: str
) -> None:
    # One write at a time per target, so each target's progress follows the batch's order.
    async with kinesis_rig(endpoints, unique_name, tables=2, max_concurrency=1) as rig:
        second = rig.tables[1]
        for n in range(10):
            for table in rig.tables:
                await rig.put(table, f"k{n}", 1, data={"S": table})
        stamps, payloads = Stamps(), []
        for table in rig.tables:
            payloads += [document(r, table, stamps.next(r)) for r in await rig.changes(table)]
        await rig.send(sorted(payloads, key=lambda p: json.loads(p)["dynamodb"]["Keys"]["pk"]["S"]))
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

        driver = EsmDriver(
            KinesisShards(rig.kinesis, US), rig.stream_arn, [first_then_look], Mapping()
        )
        await driver.drain()

        call, retry = driver.invocations
        assert had[second] == {"k0", "k1", "k2"}
        # The earliest record, in the batch's order, whose change a target lacked: the
        # second table's k3, unless that failure stopped the first pair earlier.
        lacking = [
            record["kinesis"]["sequenceNumber"]
            for record in call.records
            if (doc := json.loads(base64.b64decode(record["kinesis"]["data"])))
            and doc["dynamodb"]["Keys"]["pk"]["S"] not in had[doc["tableName"]]
        ]
        assert failures(call.response) == [lacking[0]]
        assert (
            retry.sequence_numbers
            == call.sequence_numbers[call.sequence_numbers.index(lacking[0]) :]
        )
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


async def test_a_mapping_wired_to_a_stream_no_pair_reads_is_a_config_error(
    rig: KinesisRig,
) -> None:
    [table] = rig.tables
    await rig.put(table, "k", 1)
    [change] = await rig.changes(table)
    await rig.send([document(change, table, Stamps().next(change))])
    shards = KinesisShards(rig.kinesis, US)
    [shard] = await shards.shards(rig.stream_arn)
    start = await shards.iterator(rig.stream_arn, shard.shard_id, after=None)
    [record] = (await shards.get_records(start)).records
    other = rig.stream_arn.replace(":stream/", ":stream/other-")
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
