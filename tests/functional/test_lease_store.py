"""Lease items on moto: every write is conditional, so one counter is moved by one process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from replicator.aws.factory import Clients
from replicator.aws.tables import CONTROL_KEY, ensure_table
from replicator.ha.lease import LeaseRecord
from replicator.ha.store import LeaseStore

pytestmark = pytest.mark.timeout(60)
REGION = "us-east-1"


@pytest.fixture
async def store(endpoints: dict[str, str], unique_name: str) -> AsyncIterator[LeaseStore]:
    clients = Clients(endpoints)
    try:
        client = await clients.json("dynamodb", REGION)
        await ensure_table(client, unique_name, CONTROL_KEY)
        yield LeaseStore(client, unique_name, duration=10.0)
    finally:
        await clients.aclose()


async def test_two_processes_racing_for_a_free_lease_one_takes_it(store: LeaseStore) -> None:
    results = await asyncio.gather(*(store.swap("orders", None, who) for who in ("a", "b")))

    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert await store.read("orders") == winners[0] == LeaseRecord(winners[0].owner, 1)


async def test_renewals_move_the_counter_and_a_stale_one_is_refused(store: LeaseStore) -> None:
    taken = await store.swap("orders", None, "a")
    assert taken is not None
    renewed = await store.swap("orders", taken, "a")
    assert renewed == LeaseRecord("a", 2)

    # b saw counter 1 and waited its lease out, but a renewed meanwhile: b is refused.
    assert await store.swap("orders", taken, "b") is None
    assert await store.read("orders") == LeaseRecord("a", 2)


async def test_a_released_lease_is_free_and_other_tables_are_untouched(store: LeaseStore) -> None:
    taken = await store.swap("orders", None, "a")
    assert taken is not None

    assert await store.swap("orders", taken, "") == LeaseRecord("", 2)
    assert await store.swap("orders", LeaseRecord("", 2), "b") == LeaseRecord("b", 3)
    assert await store.read("customers") is None
