"""What is retryable follows what AWS documents, with the installed botocore as the oracle.

botocore's standard retry mode retries a fixed list of transient and throttling codes
(``retries/standard.py``), the error shapes its service models mark ``retryable``, and
the policies of ``data/_retry.json`` for DynamoDB. Each of them is read here at test
time, so a botocore upgrade that retries a new code fails this test until
``replicator/aws/classify.py`` follows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import botocore
import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.retries import standard

from replicator.aws.classify import classify
from replicator.aws.json_client import client_error as wire_error
from replicator.errors import ThrottledError

SERVICES = ("dynamodb", "dynamodbstreams", "kinesis")


def _retry_json() -> dict[str, Any]:
    path = Path(botocore.__file__).parent / "data" / "_retry.json"
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def _policies() -> list[dict[str, Any]]:
    """The ``applies_when.response`` of every policy botocore applies to our services."""
    config = _retry_json()
    definitions = config["definitions"]
    found = []
    for section in ("__default__", *SERVICES):
        service = config["retry"].get(section, {})
        policies = service.get("__default__", service).get("policies", {})
        for policy in policies.values():
            resolved = definitions[policy["$ref"]] if "$ref" in policy else policy
            response = resolved["applies_when"].get("response")
            if response is not None:
                found.append(response)
    return found


def _modeled_retryable_codes() -> set[str]:
    session = botocore.session.get_session()
    codes = set()
    for service in SERVICES:
        model = session.get_service_model(service)
        for shape in model.error_shapes:
            if shape.metadata.get("retryable") is not None:
                codes.add(shape.metadata.get("error", {}).get("code") or shape.name)
    return codes


def botocore_retried_codes() -> set[str]:
    codes = set(standard.TransientRetryableChecker._TRANSIENT_ERROR_CODES)
    codes |= set(standard.ThrottledRetryableChecker._THROTTLED_ERROR_CODES)
    codes |= _modeled_retryable_codes()
    codes |= {p["service_error_code"] for p in _policies() if "service_error_code" in p}
    return codes


def botocore_retried_statuses() -> set[int]:
    statuses = set(standard.TransientRetryableChecker._TRANSIENT_STATUS_CODES)
    statuses |= {
        p["http_status_code"]
        for p in _policies()
        if "http_status_code" in p and "service_error_code" not in p
    }
    return statuses


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": "refused"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "PutItem",
    )


def test_the_oracle_is_read() -> None:
    # Guards the oracle itself: an empty list would make the tests below pass vacuously.
    assert "ProvisionedThroughputExceededException" in botocore_retried_codes()
    assert "ReplicatedWriteConflictException" in botocore_retried_codes()
    assert {500, 503, 429} <= botocore_retried_statuses()


@pytest.mark.parametrize("code", sorted(botocore_retried_codes()))
def test_every_code_botocore_retries_for_dynamodb_is_retryable(code: str) -> None:
    assert classify(client_error(code)).retryable


@pytest.mark.parametrize("status", sorted(botocore_retried_statuses()))
def test_every_status_botocore_retries_is_retryable_whatever_its_code(status: int) -> None:
    assert classify(client_error("SomethingNew", status)).retryable


def test_botocore_throttling_codes_are_throttles() -> None:
    # A throttle moves the throttle counter and the adaptive concurrency limit down. Ours
    # differ for two: a transaction still in progress and a prior request not complete are
    # waits for one item, not a sign the table is at capacity, so they are plain retries.
    for code in standard.ThrottledRetryableChecker._THROTTLED_ERROR_CODES:
        if code not in {"TransactionInProgressException", "PriorRequestNotComplete"}:
            assert isinstance(classify(client_error(code)), ThrottledError), code
    assert isinstance(classify(client_error("", 429)), ThrottledError)


def test_a_transaction_conflict_is_retried_as_the_developer_guide_says() -> None:
    # An application's TransactWriteItems holds the item a replicated write targets;
    # botocore leaves it to the caller, the guide's "Error messages and codes" says retry.
    error = classify(client_error("TransactionConflictException"))
    assert error.retryable
    assert not error.record_fault


@pytest.mark.parametrize(
    "code",
    ["ConditionalCheckFailedException", "AccessDeniedException", "TransactionCanceledException"],
)
def test_refusals_that_retrying_cannot_change_are_not_retried(code: str) -> None:
    assert not classify(client_error(code)).retryable


@pytest.mark.parametrize(
    "code",
    ["ProvisionedThroughputExceededException", "LimitExceededException", "KMSThrottlingException"],
)
def test_kinesis_throttles_are_throttles(code: str) -> None:
    # Kinesis answers a shard read past its 5 calls/s or 2 MB/s so: the reader's retry
    # policy backs off and the throttle counter moves.
    body = json.dumps({"__type": code, "message": "Rate exceeded for shard"}).encode()
    error = classify(wire_error(400, body, "GetRecords"))
    assert isinstance(error, ThrottledError)
    assert error.retryable
