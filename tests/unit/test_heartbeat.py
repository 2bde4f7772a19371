"""The heartbeat canary (DESIGN §7): its key for every key type, and its writer's tenure."""

from __future__ import annotations

import asyncio
import base64
from decimal import Decimal
from typing import Any

import pytest

from replicator.aws.backoff import Backoff
from replicator.aws.retry import RetryPolicy
from replicator.errors import AwsError
from replicator.models import item_key
from replicator.telemetry.heartbeat import (
    HeartbeatWriter,
    heartbeat_key,
    heartbeat_number,
    is_heartbeat_value,
)
from replicator.tools.verify import is_heartbeat

pytestmark = pytest.mark.timeout(10)


class RegionDown:
    """A source table whose region refuses every connection."""

    region = "us-east-1"

    def __init__(self, *, tell_after: int) -> None:
        self.attempts = 0
        self.failing = asyncio.Event()  # set once ``tell_after`` attempts have failed
        self._tell_after = tell_after

    async def put_item(self, **_: Any) -> None:
        self.attempts += 1
        if self.attempts >= self._tell_after:
            self.failing.set()
        raise AwsError("connection failed: refused", code="Connection", retryable=True)


async def test_a_heartbeat_failing_mid_outage_stops_when_its_tenure_ends() -> None:
    source = RegionDown(tell_after=3)
    service = RetryPolicy(stop=asyncio.Event(), backoff=Backoff(base=0.001, cap=0.01))
    writer = HeartbeatWriter(
        source,
        "orders",
        {"pk": {"S": "hb"}},
        version_attribute="version",
        interval=1.0,
        retry=service,
    )
    ending = asyncio.Event()  # the lease was lost: the tenure ends, the service goes on
    running = asyncio.create_task(writer.run(ending))
    await source.failing.wait()
    ending.set()
    async with asyncio.timeout(2):
        await running  # returns: it no longer waits for the region to come back
    assert not running.cancelled()


PREFIX = "__replicator_heartbeat__"
REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2", "sa-east-1")


@pytest.mark.parametrize(
    "schema",
    [
        [("pk", "HASH", "S")],
        [("pk", "HASH", "N")],
        [("pk", "HASH", "B")],
        [("pk", "HASH", "N"), ("sk", "RANGE", "S")],
        [("pk", "HASH", "B"), ("sk", "RANGE", "N")],
    ],
    ids=["S", "N", "B", "N+S", "B+N"],
)
def test_every_key_type_gets_one_heartbeat_key_per_region_that_verify_skips(
    schema: list[tuple[str, str, str]],
) -> None:
    keys = [heartbeat_key(schema, PREFIX, region) for region in REGIONS]
    assert len({item_key(key) for key in keys}) == len(REGIONS)
    for key in keys:
        assert is_heartbeat(item_key(key), PREFIX)
        # Binaries are base64 text, as DynamoDB's JSON (the stream, scans) holds them.
        assert all(isinstance(v, str) for value in key.values() for v in value.values())


def test_the_number_heartbeat_is_a_valid_dynamodb_number_below_every_ordinary_one() -> None:
    for region in REGIONS:
        number = Decimal(heartbeat_number(region))
        assert Decimal("-9.9999999999999999999999999999999999999E+125") <= number
        assert number <= Decimal("-1E+125")
        assert len(number.as_tuple().digits) <= 38  # DynamoDB's precision
        # DynamoDB answers numbers in its own spelling; the value still names the canary.
        assert is_heartbeat_value("N", f"{number:f}", PREFIX)


@pytest.mark.parametrize(
    ("type_", "value"),
    [
        ("N", "0"),
        ("N", "-99999999999999999999999"),
        ("N", "1E+125"),
        ("B", base64.b64encode(b"\x00user").decode()),
        ("B", base64.b64encode(b"user").decode()),
        ("S", "user#us-east-1"),
    ],
)
def test_ordinary_keys_are_not_heartbeats(type_: str, value: object) -> None:
    assert not is_heartbeat_value(type_, value, PREFIX)
