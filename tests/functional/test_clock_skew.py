"""A host clock minutes off is corrected from DynamoDB's Date header (DESIGN §5).

Without it every request is refused as "Signature expired", which is not retryable: the
service crash-loops on a host whose clock drifted.
"""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
from botocore.exceptions import ClientError

from replicator.aws.classify import classify
from replicator.aws.factory import Clients
from tests.stub_dynamodb import StubDynamoDB

pytestmark = pytest.mark.timeout(30)
REGION = "us-east-1"
ITEM = {"pk": {"S": "k"}}
TEN_MINUTES = 600.0


async def test_a_host_clock_ten_minutes_behind_is_corrected_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="replicator.aws.clock")
    async with StubDynamoDB(ahead=TEN_MINUTES) as dynamodb:
        clients = Clients({REGION: dynamodb.endpoint})
        try:
            put = await clients.put_client(REGION, "t")
            # Concurrent first writes are all refused; each is signed again and lands.
            writes = (put.put_item(TableName="t", Item=ITEM) for _ in range(5))
            answers = await asyncio.gather(*writes)
            assert answers == [{}] * 5
            first_round = len(dynamodb.requests)
            # Another client of the process (stream reads) signs at the corrected time too.
            streams = await clients.json("dynamodbstreams", REGION)
            await put.put_item(TableName="t", Item=ITEM)
            await streams.call("DescribeStream", {"StreamArn": "arn"})
        finally:
            await clients.aclose()
    assert dynamodb.refused == ["InvalidSignatureException"] * 5
    later = dynamodb.requests[first_round:]
    assert len(later) == 2 and not any(signed.refused for signed in later)
    skew = [record.getMessage() for record in caplog.records]
    assert len(skew) == 1 and re.search(r"\b(599|600|601) s behind", skew[0]), skew


async def test_a_host_clock_ahead_is_corrected_too() -> None:
    async with StubDynamoDB(ahead=-TEN_MINUTES) as dynamodb:
        clients = Clients({REGION: dynamodb.endpoint})
        try:
            put = await clients.put_client(REGION, "t")
            await put.put_item(TableName="t", Item=ITEM)
        finally:
            await clients.aclose()
    assert [signed.refused for signed in dynamodb.requests] == ["InvalidSignatureException", None]


async def test_skew_without_a_date_header_is_a_clear_error_naming_the_clock() -> None:
    async with StubDynamoDB(ahead=TEN_MINUTES, date=False) as dynamodb:
        clients = Clients({REGION: dynamodb.endpoint})
        try:
            put = await clients.put_client(REGION, "t")
            with pytest.raises(ClientError) as refused:
                await put.put_item(TableName="t", Item=ITEM)
        finally:
            await clients.aclose()
    error = classify(refused.value)
    assert not error.retryable
    assert "Signature expired" in str(error) and "set the host's clock (NTP)" in str(error)
    assert len(dynamodb.requests) == 1  # nothing to correct by: not sent again
