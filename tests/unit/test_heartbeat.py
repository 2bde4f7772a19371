"""The heartbeat writer of a tenure (DESIGN §7) ends with the tenure, even mid-outage."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from replicator.aws.backoff import Backoff
from replicator.aws.retry import RetryPolicy
from replicator.errors import AwsError
from replicator.telemetry.heartbeat import HeartbeatWriter

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
