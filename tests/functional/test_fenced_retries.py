"""A retried dead letter or checkpoint never goes out once the lease is lost (DESIGN §6).

The fence is asked before every attempt, not only before the first: an active process
paused (SIGSTOP, a VM freeze) while its DLQ put or checkpoint save was backing off
from a fault wakes up fenced, and its retry must not reach the table.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from replicator.aws.factory import Clients
from replicator.aws.retry import RetryPolicy
from replicator.aws.tables import CONTROL_KEY, ensure_table
from replicator.errors import LeaseLost
from replicator.ha.fence import FencedCheckpoints, send_guard
from replicator.models import Checkpoint, TargetRef
from replicator.pipeline.dlq import DeadLetterQueue
from tests.faulty import FaultyEndpoint
from tests.records import image, record

pytestmark = pytest.mark.timeout(60)
REGION = "us-east-1"


@dataclass
class Fence:
    source_table: str = "orders"
    open: bool = True

    def may_write(self) -> bool:
        return self.open


@dataclass
class Rig:
    fence: Fence
    faulty: FaultyEndpoint
    clients: Clients
    table: str

    def policy(self) -> RetryPolicy:
        async def lose_the_lease_while_backing_off(_: float, __: asyncio.Event) -> bool:
            self.fence.open = False
            return False

        return RetryPolicy(wait=lose_the_lease_while_backing_off)

    def sent(self) -> int:
        return sum(self.faulty.injected.values())


@pytest.fixture
async def rig(endpoints: dict[str, str], unique_name: str) -> AsyncIterator[Rig]:
    direct = Clients(endpoints)
    await ensure_table(await direct.json("dynamodb", REGION), unique_name, CONTROL_KEY)
    await direct.aclose()
    # Every request fails; seed 0 answers the first with a throttle (a dropped connection
    # would be re-sent below us, by the HTTP layer, and count twice).
    faulty = FaultyEndpoint(endpoints[REGION], rate=1.0, seed=0)
    async with faulty.serving() as url:
        clients = Clients({REGION: url})
        try:
            yield Rig(Fence(), faulty, clients, unique_name)
        finally:
            await clients.aclose()


async def test_a_dead_letter_retry_after_the_lease_is_lost_is_not_sent(rig: Rig) -> None:
    guard = send_guard(rig.fence, "dead-letter write")
    dlq = DeadLetterQueue(
        await rig.clients.json("dynamodb", REGION), rig.table, retry=rig.policy(), guard=guard
    )
    with pytest.raises(LeaseLost):
        await dlq.put(
            source_table="orders",
            target=TargetRef("eu-west-1", "orders"),
            record=record("INSERT", 5, new=image("a", None)),
            reason="no version",
        )
    assert rig.sent() == 1, rig.faulty.injected  # the first attempt only


async def test_a_checkpoint_retry_after_the_lease_is_lost_is_not_sent(rig: Rig) -> None:
    db = await rig.clients.json("dynamodb", REGION)
    checkpoints = FencedCheckpoints(db, rig.table, rig.fence, retry=rig.policy())
    with pytest.raises(LeaseLost):
        await checkpoints.save(
            "orders", Checkpoint("shard-1", TargetRef("eu-west-1", "orders"), "11", False)
        )
    assert rig.sent() == 1, rig.faulty.injected
