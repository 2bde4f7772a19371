"""Table set-up waits a table out, but never past SIGTERM."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from replicator.aws.retry import RetryPolicy
from replicator.aws.tables import wait_active
from replicator.errors import ShutdownInterrupted

pytestmark = pytest.mark.timeout(10)


class CreatingTable:
    """A DynamoDB client whose table stays CREATING; ``stop`` is set at its second look."""

    region = "us-east-1"

    def __init__(self, stop: asyncio.Event) -> None:
        self.looks = 0
        self._stop = stop

    async def describe_table(self, **_: Any) -> dict[str, Any]:
        self.looks += 1
        if self.looks == 2:
            self._stop.set()  # SIGTERM while the control table is being created
        return {"Table": {"TableStatus": "CREATING"}}


async def test_sigterm_ends_the_wait_for_a_table_still_being_created() -> None:
    stop = asyncio.Event()
    client = CreatingTable(stop)
    with pytest.raises(ShutdownInterrupted, match="not yet ACTIVE"):
        async with asyncio.timeout(2):  # not the 120 s the table is given
            await wait_active(client, "control", retry=RetryPolicy(stop=stop))
    assert client.looks == 2
