"""Lambda mode: the handler under the local ESM driver, on real moto stream records.

Each test writes into a source table in us-east-1, lets the driver deliver its stream
as the event source mapping does, and checks the eu-west-1 replica with ``verify``.
Faults are injected through our writer seam, never into boto3.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest

from chaos.proxy import FaultProxy, Faults
from replicator.config.environment import CONFIG_ENV, CONFIG_YAML_ENV
from replicator.lambda_mode import handler as lambda_handler
from replicator.lambda_mode.batch import WRITE_ATTEMPTS
from replicator.models import item_key
from replicator.pipeline.dlq import decode_record
from tests.esm_driver import Context, Invocation, Mapping
from tests.lambda_rig import US, FailingWrites, RefusedKey, Rig, Unanswered, config_for, lambda_rig

pytestmark = pytest.mark.timeout(90)

N38 = "12345678901234567890123456789012345678"  # 38 significant digits, DynamoDB's limit


@pytest.fixture
async def rig(endpoints: dict[str, str], unique_name: str) -> AsyncIterator[Rig]:
    async with lambda_rig(endpoints, unique_name) as rig:
        yield rig


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def attributes(n: int, version: int) -> dict[str, dict[str, Any]]:
    """Every kind of value: 38-digit and fractional numbers, binary, sets, nested maps."""
    return {
        "big": {"N": N38},
        "small": {"N": f"-0.{N38[:30]}"},
        "blob": {"B": b64(bytes([n % 256, 0, 255, version]))},
        "tags": {"SS": [f"t{n}", f"v{version}"]},
        "scores": {"NS": [str(n), N38, "0.5"]},
        "blobs": {"BS": [b64(b"\x00"), b64(bytes([n % 256 + 1]))]},
        "doc": {
            "M": {
                "list": {"L": [{"S": "x"}, {"N": str(version)}, {"B": b64(b"\x01\x02")}]},
                "flag": {"BOOL": version % 2 == 0},
                "none": {"NULL": True},
            }
        },
    }


async def mixed_workload(rig: Rig, keys: int) -> None:
    """Inserts, updates, deletes and re-creates (version reset to 1)."""
    for n in range(keys):
        await rig.put(f"k{n}", 1, **attributes(n, 1))
    for n in range(0, keys, 2):
        await rig.put(f"k{n}", 2, **attributes(n, 2))
    for n in range(0, keys, 3):
        await rig.delete(f"k{n}")
    for n in range(0, keys, 6):
        await rig.put(f"k{n}", 1, **attributes(n, 7))
    for n in range(0, keys, 12):
        await rig.put(f"k{n}", 2, **attributes(n, 8))


def failures(response: Any) -> list[str]:
    return [f["itemIdentifier"] for f in response["batchItemFailures"]]


async def deliver_with_a_short_first_call(
    rig: Rig, function: Any, seconds: float, then: Callable[[], None] = lambda: None
) -> tuple[int, Invocation, Invocation]:
    """Drain the stream: the first invocation gets ``seconds`` of the function's time and
    ``then()`` runs after it (a fault heals); later ones get the driver's. Returns the time
    left when the short one answered (ms), it, and the retry of its batch."""
    left_ms: list[int] = []

    def short_then_normal(event: dict[str, Any], context: Any) -> Any:
        if left_ms:
            return function(event, context)
        short = Context(timeout_seconds=seconds)
        response = function(event, short)
        left_ms.append(short.get_remaining_time_in_millis())
        then()
        return response

    driver = rig.driver([short_then_normal], Mapping(batch_size=100))
    await driver.drain()
    short, retry = driver.invocations
    return left_ms[0], short, retry


@pytest.mark.parametrize("given", ["a packaged file", "the YAML in a variable"])
async def test_mixed_workload_through_the_handler_leaves_no_difference(
    rig: Rig, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    text = json.dumps(rig.config.model_dump(mode="json", by_alias=True))  # JSON is YAML
    if given == "a packaged file":
        path = tmp_path / "replicator.yaml"
        path.write_text(text)
        monkeypatch.setenv(CONFIG_ENV, str(path))
        monkeypatch.delenv(CONFIG_YAML_ENV, raising=False)
    else:
        monkeypatch.delenv(CONFIG_ENV, raising=False)
        monkeypatch.setenv(CONFIG_YAML_ENV, text)
    await mixed_workload(rig, keys=60)
    driver = rig.driver([lambda_handler.handler], Mapping(batch_size=100))
    try:
        await driver.drain()
    finally:
        await asyncio.to_thread(lambda_handler.close_warm)

    delivered = [seq for call in driver.invocations for seq in call.sequence_numbers]
    assert len(delivered) > 100 and len(driver.invocations) >= 2
    assert all(len(call.sequence_numbers) <= 100 for call in driver.invocations)
    assert [failures(call.response) for call in driver.invocations] == [[]] * len(
        driver.invocations
    )
    assert await rig.differences() == []


async def test_a_transient_fault_mid_batch_is_reported_from_the_first_unapplied_record(
    endpoints: dict[str, str], unique_name: str
) -> None:
    # One write at a time, so "the first unapplied record" is the 40th.
    async with lambda_rig(endpoints, unique_name, max_concurrency=1) as rig:
        for n in range(100):
            await rig.put(f"k{n:03}", 1)
        faults: list[FailingWrites] = []

        def flaky(_target: Any, writer: Any) -> FailingWrites:
            faults.append(FailingWrites(writer, after=39, times=WRITE_ATTEMPTS))
            return faults[0]

        driver = rig.driver([rig.function(writer_seam=flaky)], Mapping(batch_size=100))
        await driver.drain()

        first, retry = driver.invocations
        assert failures(first.response) == [first.sequence_numbers[39]]
        assert retry.sequence_numbers == first.sequence_numbers[39:]
        assert failures(retry.response) == []
        assert faults[0].attempts == 100 + WRITE_ATTEMPTS
        assert await rig.differences() == []


async def test_a_poison_record_mid_batch_is_dead_lettered_and_the_rest_applied(
    rig: Rig,
) -> None:
    for n in range(20):
        if n == 7:
            await rig.put("no-version", None, data={"S": "no numeric version"})
        elif n == 12:
            await rig.put("refused", 1)
        else:
            await rig.put(f"k{n}", 1)
    function = rig.function(writer_seam=lambda _target, writer: RefusedKey(writer, "refused"))
    driver = rig.driver([function], Mapping(batch_size=100))
    await driver.drain()

    [call] = driver.invocations
    assert failures(call.response) == []
    entries = await rig.dead_letters()
    dead = {decode_record(e)["dynamodb"]["Keys"]["pk"]["S"]: e for e in entries}
    assert sorted(dead) == ["no-version", "refused"]
    assert "version" in dead["no-version"]["reason"]["S"]
    assert "ValidationException" in dead["refused"]["reason"]["S"]
    assert sorted((d.kind, d.key) for d in await rig.differences()) == [
        ("missing", item_key({"pk": {"S": "no-version"}})),
        ("missing", item_key({"pk": {"S": "refused"}})),
    ]
    assert function.metrics.total("applied") == 18
    assert function.metrics.total("dead_lettered") == 2


async def test_a_context_with_200_ms_left_starts_no_write_and_reports_the_batch(
    rig: Rig,
) -> None:
    for n in range(10):
        await rig.put(f"k{n}", 1)
    seams: list[FailingWrites] = []

    def counting(_target: Any, writer: Any) -> FailingWrites:
        seams.append(FailingWrites(writer, after=0, times=0))
        return seams[0]

    function = rig.function(writer_seam=counting)
    attempts_when_short: list[int] = []

    def count() -> None:  # the writers may not even exist yet
        attempts_when_short.append(sum(seam.attempts for seam in seams))

    _, short, retry = await deliver_with_a_short_first_call(rig, function, 0.2, count)

    assert failures(short.response) == [short.sequence_numbers[0]]
    assert attempts_when_short == [0]  # not one write started
    assert retry.sequence_numbers == short.sequence_numbers
    assert failures(retry.response) == []
    assert await rig.differences() == []


async def test_a_write_left_unanswered_is_cancelled_and_reported_before_the_timeout(
    rig: Rig,
) -> None:
    for n in range(5):
        await rig.put(f"k{n}", 1)
    seams: list[Unanswered] = []

    def unanswered(_target: Any, writer: Any) -> Unanswered:
        seams.append(Unanswered(writer))  # takes writes, answers none until told
        return seams[-1]

    function = rig.function(writer_seam=unanswered)

    def answer() -> None:
        seams[0].hanging = False

    left_ms, short, retry = await deliver_with_a_short_first_call(rig, function, 2.5, answer)

    assert left_ms > 0  # answered before its timeout, not after the attempt's 10 s
    assert failures(short.response) == [short.sequence_numbers[0]]
    assert failures(retry.response) == []
    assert await rig.differences() == []


async def test_a_cold_start_whose_source_does_not_answer_reports_the_batch_in_time(
    rig: Rig, endpoints: dict[str, str]
) -> None:
    for n in range(3):
        await rig.put(f"k{n}", 1)
    source = urlsplit(endpoints[US])
    assert source.hostname is not None and source.port is not None
    async with FaultProxy((source.hostname, source.port), faults=Faults(blackhole=True)) as proxy:
        # Its first call checks the DLQ table in the source region, which answers nothing.
        function = rig.function(config=config_for({**endpoints, US: proxy.url}, rig.table))
        left_ms, short, retry = await deliver_with_a_short_first_call(
            rig, function, 2.5, proxy.faults.heal
        )

    assert left_ms > 0  # answered before its timeout
    assert failures(short.response) == [short.sequence_numbers[0]]
    assert failures(retry.response) == []
    assert await rig.differences() == []


async def test_bisect_on_error_isolates_the_record_a_raising_handler_fails_on(
    rig: Rig,
) -> None:
    for n in range(8):
        await rig.put(f"k{n}", 1)
    async with rig.sqs() as sqs:
        queue = (await sqs.create_queue(QueueName=f"{rig.table}-on-failure"))["QueueUrl"]
        function = rig.function()
        poison: list[str] = []

        def raises_on_poison(event: dict[str, Any], context: Any) -> Any:
            sequences = [r["dynamodb"]["SequenceNumber"] for r in event["Records"]]
            poison[:] = poison or [sequences[5]]
            if poison[0] in sequences:
                raise RuntimeError("the function fails on this record")
            return function(event, context)

        mapping = Mapping(
            batch_size=8,
            bisect_batch_on_function_error=True,
            maximum_retry_attempts=2,
            on_failure_queue_url=queue,
        )
        driver = rig.driver([raises_on_poison], mapping)
        driver.sqs = sqs
        await driver.drain()

        sizes = [len(call.sequence_numbers) for call in driver.invocations]
        # Halves until the record stands alone; it is tried 1 + MaximumRetryAttempts times.
        assert sizes == [8, 4, 4, 2, 1, 1, 1, 1, 2]
        assert driver.discarded == poison
        [message] = (await sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10))["Messages"]
        record = json.loads(message["Body"])
        assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
        assert record["requestContext"]["approximateInvokeCount"] == 3
        info = record["DDBStreamBatchInfo"]
        assert (info["startSequenceNumber"], info["endSequenceNumber"]) == (poison[0], poison[0])
        assert (info["batchSize"], info["streamArn"]) == (1, rig.stream_arn)
        assert [d.kind for d in await rig.differences()] == ["missing"]


async def test_parallel_batches_of_a_shard_keep_each_keys_order(rig: Rig) -> None:
    for version in range(1, 9):
        for n in range(6):
            await rig.put(f"k{n}", version, step={"N": str(version)})
    functions = [rig.function() for _ in range(3)]
    driver = rig.driver(functions, Mapping(batch_size=5, parallelization_factor=3))
    await driver.drain()

    delivered: dict[str, list[int]] = {}
    lanes: dict[str, set[int]] = {}
    for call in driver.invocations:
        for record in call.records:
            key = record["dynamodb"]["Keys"]["pk"]["S"]
            delivered.setdefault(key, []).append(int(record["dynamodb"]["SequenceNumber"]))
            lanes.setdefault(key, set()).add(call.lane)
    assert all(len(seqs) == 8 and seqs == sorted(seqs) for seqs in delivered.values())
    assert all(len(used) == 1 for used in lanes.values())  # a key stays in one lane
    assert len(set().union(*lanes.values())) > 1  # and keys are spread over lanes
    assert await rig.differences() == []


async def test_records_older_than_the_maximum_age_go_to_the_on_failure_queue(rig: Rig) -> None:
    for n in range(3):
        await rig.put(f"k{n}", 1)
    async with rig.sqs() as sqs:
        queue = (await sqs.create_queue(QueueName=f"{rig.table}-on-failure"))["QueueUrl"]
        mapping = Mapping(maximum_record_age_in_seconds=60, on_failure_queue_url=queue)
        driver = rig.driver([rig.function()], mapping)
        driver.sqs = sqs
        driver.clock = lambda: time.time() + 3600  # an hour later: every record is too old
        await driver.drain()

        assert driver.invocations == [] and len(driver.discarded) == 3
        [message] = (await sqs.receive_message(QueueUrl=queue))["Messages"]
        record = json.loads(message["Body"])
        assert record["requestContext"]["condition"] == "RecordAgeExceeded"
        assert record["DDBStreamBatchInfo"]["batchSize"] == 3


async def test_active_active_a_local_delete_leaves_a_local_tombstone(
    endpoints: dict[str, str], unique_name: str
) -> None:
    async with lambda_rig(endpoints, unique_name, mode="active-active") as rig:
        await rig.put("k", 1)
        await rig.put("k", 2)
        await rig.delete("k")
        driver = rig.driver([rig.function()])
        await driver.drain()
        await driver.drain()  # the local tombstone's own stream record is skipped

        key = {"pk": {"S": "k"}}
        here = await (await rig.db()).get_item(TableName=rig.table, Key=key, ConsistentRead=True)
        there = await (await rig.db("eu-west-1")).get_item(
            TableName=rig.table, Key=key, ConsistentRead=True
        )
        for item in (here["Item"], there["Item"]):
            assert item["_rep_deleted"] == {"BOOL": True} and item["version"] == {"N": "2"}
        assert [failures(call.response) for call in driver.invocations] == [[], []]
        assert await rig.differences() == []


async def test_active_active_a_zombie_is_replicated_live_and_healed_here(
    endpoints: dict[str, str], unique_name: str
) -> None:
    async with lambda_rig(endpoints, unique_name, mode="active-active") as rig:
        await rig.put("k", 1)
        await rig.delete("k")
        driver = rig.driver([rig.function()])
        await driver.drain()  # the local tombstone v1 is written here
        key = {"pk": {"S": "k"}}
        # An optimistic-locking update that landed on the tombstone (DESIGN §4 rule 7).
        await (await rig.db()).update_item(
            TableName=rig.table,
            Key=key,
            UpdateExpression="SET #v = :v",
            ExpressionAttributeNames={"#v": "version"},
            ExpressionAttributeValues={":v": {"N": "2"}},
        )
        await driver.drain()

        for region in ("us-east-1", "eu-west-1"):
            got = await (await rig.db(region)).get_item(
                TableName=rig.table, Key=key, ConsistentRead=True
            )
            assert got["Item"]["version"] == {"N": "2"}
            assert "_rep_deleted" not in got["Item"] and "_rep_expires" not in got["Item"]
        assert await rig.differences() == []
