"""Reading what Lambda delivers: stream batches as JSON, schedule ticks, wrong wiring."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from replicator.config.schema import parse_config
from replicator.errors import ConfigError
from replicator.lambda_mode import handler as lambda_handler
from replicator.lambda_mode.event import KinesisBatch, is_scheduled, stream_batch
from replicator.lambda_mode.function import LambdaFunction
from replicator.models import Change, Meta, item_key
from replicator.stream.records import to_change
from replicator.tools.scan import wire_key
from tests.esm_driver import Context, shape
from tests.kinesis_feed import raw_record
from tests.records import image, record

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-11-30T00:00:00.000"
KINESIS_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/orders-changes"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_binary_values_stay_base64_text_so_a_binary_key_names_the_item_a_scan_reads() -> None:
    binary_key = {"pk": {"B": b64(b"\x01\x80")}}
    new = {**image("a", 3), **binary_key}
    new["blob"] = {"B": b64(b"\x00\xff")}
    new["blobs"] = {"BS": [b64(b"\x01"), b64(b"\x02")]}
    new["doc"] = {"M": {"inner": {"B": b64(b"\x03")}, "list": {"L": [{"B": b64(b"\x04")}]}}}
    old = {**image("a", 2), **binary_key}
    event = {"Records": [shape(record("MODIFY", 42, new=new, old=old), ARN)]}

    batch = stream_batch(event)

    assert (batch.stream_arn, batch.region, batch.table) == (ARN, "us-east-1", "orders")
    [delivered] = batch.records
    assert delivered["dynamodb"]["NewImage"] == new
    change = to_change(delivered, here="us-east-1", meta=Meta(version="version"))
    assert isinstance(change, Change)
    assert change.key == item_key(binary_key)  # what verify, repair and dlq read back
    assert wire_key(change.key) == binary_key
    assert change.created_at == 1_700_000_000.0  # epoch seconds, as Lambda sends them


def kinesis_record(seq: str, data: str = "eyJhIjoxfQ==", arn: str = KINESIS_ARN) -> dict[str, Any]:
    """A record as a Kinesis event source mapping delivers it (its data: base64 text)."""
    return {**raw_record(data, int(seq)), "eventSourceARN": arn}


def test_a_kinesis_event_names_its_stream_and_keeps_each_record_as_delivered() -> None:
    records = [kinesis_record("49590338271490256608559692538361571095921575989136588898")]
    records.append(kinesis_record("2", data="bm90IGpzb24="))  # not JSON: the decode's to judge

    batch = stream_batch({"Records": records})

    assert isinstance(batch, KinesisBatch)
    assert (batch.stream_arn, batch.region, batch.stream) == (
        KINESIS_ARN,
        "us-east-1",
        "orders-changes",
    )
    assert batch.records == records


def test_a_schedule_tick_is_told_apart_from_a_stream_batch() -> None:
    tick = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    assert is_scheduled(tick)
    assert not is_scheduled({"Records": [shape(record("INSERT", 1, new=image("a", 1)), ARN)]})


@pytest.mark.parametrize(
    ("event", "says"),
    [
        ({}, "no list of Records"),
        ({"Records": []}, "no list of Records"),
        ({"Records": ["text"]}, "no list of Records"),
        (
            {
                "Records": [
                    shape(record("INSERT", 1, new=image("a", 1)), ARN),
                    shape(record("INSERT", 2, new=image("b", 1)), ARN.replace("orders", "other")),
                ]
            },
            "one stream's records per invocation",
        ),
        (
            {"Records": [shape(record("INSERT", 1, new=image("a", 1)), "arn:aws:sqs:q")]},
            "not a DynamoDB stream ARN",
        ),
    ],
)
def test_an_event_no_stream_mapping_sends_is_a_clear_error(event: Any, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        stream_batch(event)


@pytest.mark.parametrize(
    ("records", "says"),
    [
        ([kinesis_record("1", arn="arn:aws:sqs:us-east-1:1:q")], "not a Kinesis stream ARN"),
        (
            [kinesis_record("1"), kinesis_record("2", arn=KINESIS_ARN + "-2")],
            "one stream's records per invocation",
        ),
        ([{**kinesis_record("1"), "kinesis": {"data": "e30="}}], "kinesis.sequenceNumber"),
        (
            [kinesis_record("1"), {**kinesis_record("2"), "eventSource": "aws:dynamodb"}],
            "not a Kinesis record",
        ),
    ],
)
def test_a_kinesis_event_no_mapping_sends_is_a_clear_error(
    records: list[dict[str, Any]], says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        stream_batch({"Records": records})


def test_the_handler_names_the_missing_config_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(lambda_handler.CONFIG_ENV, raising=False)
    with pytest.raises(ConfigError, match="REPLICATOR_CONFIG is not set"):
        lambda_handler.handler({"Records": []}, Context(timeout_seconds=1))


def test_a_stream_of_another_region_is_refused_before_any_write() -> None:
    config = parse_config(
        {
            "source_region": "eu-west-1",
            "pairs": [
                {"source_table": "orders", "targets": [{"region": "us-east-1", "table": "orders"}]}
            ],
        }
    )
    function = LambdaFunction(config)
    event = {"Records": [shape(record("INSERT", 1, new=image("a", 1)), ARN)]}
    try:
        with pytest.raises(ConfigError, match="one function per source region"):
            function(event, Context(timeout_seconds=1))
    finally:
        function.close()
