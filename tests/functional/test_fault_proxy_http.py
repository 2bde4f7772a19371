"""The fault proxy's DynamoDB-shaped faults, seen through a real AWS client on moto.

Each fault is asserted as the client sees it: the error code botocore parses out of the
canned answer, a reset connection, a request that is never answered, added latency.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiobotocore.session import get_session
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from chaos.httpfaults import STREAMS_TARGET
from chaos.proxy import Direction, FaultKind, FaultProxy, Faults, HttpFault

pytestmark = pytest.mark.timeout(30)
REGION = "us-east-1"
# One attempt, so that each fault reaches the test; timeouts generous for a loaded machine,
# except where a blackhole must be seen as one.
NO_RETRIES = BotoConfig(retries={"total_max_attempts": 1}, read_timeout=15, connect_timeout=5)
IMPATIENT = NO_RETRIES.merge(BotoConfig(read_timeout=1.0))


def upstream(endpoints: dict[str, str]) -> tuple[str, int]:
    parts = urlsplit(endpoints[REGION])
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


@asynccontextmanager
async def client_through(
    proxy: FaultProxy, service: str = "dynamodb", config: BotoConfig = NO_RETRIES
) -> AsyncIterator[Any]:
    async with get_session().create_client(
        service, region_name=REGION, endpoint_url=proxy.url, config=config
    ) as client:
        yield client


def always(kind: FaultKind, only: str = "") -> Faults:
    return Faults(http=[HttpFault(kind, 1.0, only)])


@pytest.mark.parametrize(
    ("kind", "code", "status"),
    [
        (FaultKind.THROTTLING, "ThrottlingException", 400),
        (FaultKind.THROUGHPUT, "ProvisionedThroughputExceededException", 400),
        (FaultKind.SERVER_ERROR, "InternalServerError", 500),
    ],
)
async def test_json_errors_reach_the_client_as_the_service_error(
    endpoints: dict[str, str], kind: FaultKind, code: str, status: int
) -> None:
    async with (
        FaultProxy(upstream(endpoints), faults=always(kind), http=True) as proxy,
        client_through(proxy) as client,
    ):
        with pytest.raises(ClientError) as raised:
            await client.list_tables()
    assert raised.value.response["Error"]["Code"] == code
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert proxy.stats.injected[kind.value] == 1


async def test_a_503_has_an_html_body_and_no_error_code(endpoints: dict[str, str]) -> None:
    async with (
        FaultProxy(upstream(endpoints), faults=always(FaultKind.UNAVAILABLE), http=True) as proxy,
        client_through(proxy) as client,
    ):
        with pytest.raises(ClientError) as raised:
            await client.list_tables()
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert raised.value.response["Error"]["Code"] in ("503", "ServiceUnavailable")


async def test_limit_exceeded_hits_only_the_streams_api(endpoints: dict[str, str]) -> None:
    faults = always(FaultKind.LIMIT_EXCEEDED, only=STREAMS_TARGET)
    async with FaultProxy(upstream(endpoints), faults=faults, http=True) as proxy:
        async with client_through(proxy) as dynamodb:
            await dynamodb.list_tables()  # not a Streams call: forwarded
        async with client_through(proxy, "dynamodbstreams") as streams:
            with pytest.raises(ClientError) as raised:
                await streams.list_streams()
    assert raised.value.response["Error"]["Code"] == "LimitExceededException"
    assert proxy.stats.injected == {FaultKind.LIMIT_EXCEEDED.value: 1}


async def test_a_reset_connection_fails_the_request(endpoints: dict[str, str]) -> None:
    async with (
        FaultProxy(upstream(endpoints), faults=always(FaultKind.RESET), http=True) as proxy,
        client_through(proxy) as client,
    ):
        with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
            await client.list_tables()
    assert proxy.stats.injected[FaultKind.RESET.value] == 1


@pytest.mark.parametrize("whole_proxy", [False, True], ids=["per-request", "nemesis"])
async def test_a_blackhole_accepts_and_never_answers(
    endpoints: dict[str, str], whole_proxy: bool
) -> None:
    faults = Faults(blackhole=True) if whole_proxy else always(FaultKind.BLACKHOLE)
    async with (
        FaultProxy(upstream(endpoints), faults=faults, http=True) as proxy,
        client_through(proxy, config=IMPATIENT) as client,
    ):
        with pytest.raises(ReadTimeoutError):
            await client.list_tables()
        faults.heal()
        async with client_through(proxy) as patient:
            assert "TableNames" in await patient.list_tables()  # healed: answered again
    assert sum(proxy.stats.injected.values()) >= 1


async def test_a_share_of_requests_is_faulted_and_the_rest_forwarded(
    endpoints: dict[str, str],
) -> None:
    faults = Faults(http=[HttpFault(FaultKind.THROTTLING, 0.5)])
    answered = 0
    async with (
        FaultProxy(upstream(endpoints), faults=faults, http=True) as proxy,
        client_through(proxy) as client,
    ):
        for _ in range(40):
            try:
                await client.list_tables()
                answered += 1
            except ClientError:
                pass
    throttled = proxy.stats.injected[FaultKind.THROTTLING.value]
    assert answered + throttled == 40
    assert 5 <= throttled <= 35


async def test_latency_with_jitter_delays_every_answer(endpoints: dict[str, str]) -> None:
    faults = Faults(up_delay=0.05, down_delay=0.05, jitter=0.05)
    async with (
        FaultProxy(upstream(endpoints), faults=faults, http=True) as proxy,
        client_through(proxy) as client,
    ):
        await client.list_tables()  # the connection is set up outside the timing
        started = time.monotonic()
        for _ in range(3):
            await client.list_tables()
        elapsed = time.monotonic() - started
    assert elapsed >= 3 * 0.1 - 0.01
    assert all(0.05 <= faults.delay(Direction.UP) <= 0.1 for _ in range(20))


async def test_the_bandwidth_cap_slows_a_large_answer(endpoints: dict[str, str]) -> None:
    big = "x" * 200_000
    async with FaultProxy(upstream(endpoints), http=True) as proxy, client_through(proxy) as client:
        table = f"bw-{time.monotonic_ns()}"
        await client.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        await client.put_item(TableName=table, Item={"pk": {"S": "a"}, "v": {"S": big}})
        proxy.faults.bandwidth = 200_000.0  # bytes per second: about 1 s for the item
        started = time.monotonic()
        answer = await asyncio.wait_for(
            client.get_item(TableName=table, Key={"pk": {"S": "a"}}), timeout=10
        )
        elapsed = time.monotonic() - started
    assert answer["Item"]["v"]["S"] == big
    assert elapsed >= 0.7
