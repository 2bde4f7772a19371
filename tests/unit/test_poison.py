"""Record faults and our faults are different (DESIGN §5); a DLQ entry always fits."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

import pytest
from botocore.exceptions import ClientError

from replicator.aws.classify import classify
from replicator.errors import RequestError
from replicator.models import TargetRef
from replicator.pipeline.dlq import decode_record, dlq_entry, record_json
from replicator.pipeline.itemsize import MAX_ITEM_BYTES, item_size
from replicator.stream.fake_records import stream_record

pytestmark = pytest.mark.timeout(10)

EU = TargetRef("eu-west-1", "orders")


def client_error(code: str, message: str, status: int = 400) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "PutItem")


@pytest.mark.parametrize(
    "message",
    [
        "Item size has exceeded the maximum allowed size",
        "One or more parameter values were invalid: Type mismatch for key pk expected: S actual: N",
        "One or more parameter values are not valid. The AttributeValue for a key attribute "
        "cannot contain an empty string value. Key: pk",
        "One or more parameter values were invalid: Missing the key sk in the item",
        "One or more parameter values were invalid: Size of hashkey has exceeded the maximum "
        "size limit of 2048 bytes",
        "Number overflow. Attempting to store a number with magnitude larger than supported range",
    ],
)
def test_a_validation_error_that_names_the_item_is_a_record_fault(message: str) -> None:
    error = classify(client_error("ValidationException", message))
    assert error.record_fault and not error.retryable
    assert not isinstance(error, RequestError)


@pytest.mark.parametrize(
    "message",
    [
        "Invalid ConditionExpression: The expression has redundant parentheses",
        "Value provided in ExpressionAttributeValues unused in expressions: keys: {:x}",
        'ExpressionAttributeNames contains invalid key: Syntax error; key: "#"',
        "1 validation error detected: Value '' at 'tableName' failed to satisfy constraint",
        "",
    ],
)
def test_a_validation_error_of_our_request_shape_is_a_bug_never_a_record_fault(
    message: str,
) -> None:
    error = classify(client_error("ValidationException", message))
    assert isinstance(error, RequestError)
    assert not error.record_fault and not error.retryable


def test_a_full_item_collection_is_a_record_fault_not_retried_forever() -> None:
    error = classify(
        client_error("ItemCollectionSizeLimitExceededException", "Collection size exceeded")
    )
    assert error.record_fault and not error.retryable


def test_the_item_size_follows_dynamodbs_rule() -> None:
    assert item_size({"pk": {"S": "abc"}}) == 2 + 3
    assert item_size({"n": {"N": "12345"}}) == 1 + 4
    # A binary counts its bytes, not the base64 text the wire carries it as.
    ten_bytes = base64.b64encode(b"\x00" * 10).decode()
    assert item_size({"b": {"B": ten_bytes}, "t": {"BOOL": True}}) == 11 + 2
    assert item_size({"s": {"BS": [ten_bytes, base64.b64encode(b"12").decode()]}}) == 1 + 12
    assert item_size({"l": {"L": [{"S": "ab"}, {"NULL": True}]}}) == 1 + 3 + (1 + 2) + (1 + 1)
    assert item_size({"m": {"M": {"k": {"S": "v"}}}}) == 1 + 3 + 1 + 1 + 1


def huge_record(image_bytes: int, *, compressible: bool) -> dict[str, Any]:
    def blob() -> str:
        return "x" * image_bytes if compressible else os.urandom(image_bytes // 2).hex()

    return stream_record(
        "MODIFY",
        {"pk": "big"},
        new={"version": 2, "data": blob()},
        old={"version": 1, "data": blob()},
        sequence=str(10**20 + 7),
    )


def entry_for(record: dict[str, Any], *, recreate: bool = False) -> dict[str, Any]:
    return dlq_entry(
        source_table="orders",
        target=EU,
        record=record,
        reason="too large",
        recreate=recreate,
        failed_at=1.0,
    )


def test_a_large_compressible_record_is_kept_whole_and_compressed() -> None:
    record = huge_record(MAX_ITEM_BYTES - 100, compressible=True)
    entry = entry_for(record)
    assert item_size(entry) <= MAX_ITEM_BYTES
    assert "images_omitted" not in entry
    assert decode_record(entry) == json.loads(record_json(record))


def test_an_entry_that_cannot_fit_keeps_keys_sizes_and_digests_and_the_recreate_flag() -> None:
    record = huge_record(MAX_ITEM_BYTES - 100, compressible=False)
    entry = entry_for(record, recreate=True)
    assert item_size(entry) <= MAX_ITEM_BYTES
    assert entry["images_omitted"] == {"BOOL": True}
    assert decode_record(entry) is None
    assert entry["recreate"] == {"BOOL": True}
    assert entry["sequence_number"] == {"S": str(10**20 + 7)}
    assert entry["event_name"] == {"S": "MODIFY"}
    assert json.loads(entry["keys"]["S"]) == {"pk": {"S": "big"}}
    new_image = record_json(record["dynamodb"]["NewImage"]).encode()
    assert entry["NewImage_sha256"] == {"S": hashlib.sha256(new_image).hexdigest()}
    assert entry["NewImage_bytes"] == {"N": str(len(new_image))}
    assert "OldImage_sha256" in entry and entry["reason"] == {"S": "too large"}


def test_a_binary_keyed_record_round_trips_through_its_entry_with_the_key_it_names() -> None:
    key = {"pk": b"\x00\xff\x80key"}
    record = stream_record("INSERT", key, new={"blob": os.urandom(64)}, sequence="42")
    entry = entry_for(record)
    # Stored as the wire's text (a DLQ table read by any SDK sees the compressed bytes).
    zlib_bytes = base64.b64decode(entry["record"]["B"], validate=True)
    assert zlib_bytes[:1] == b"\x78"  # a zlib stream
    stored = decode_record(entry)
    assert stored is not None
    assert stored["dynamodb"]["Keys"] == record["dynamodb"]["Keys"]
    assert stored["dynamodb"]["Keys"] == {"pk": {"B": base64.b64encode(key["pk"]).decode()}}
    assert json.loads(entry["keys"]["S"]) == record["dynamodb"]["Keys"]
