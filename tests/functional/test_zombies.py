"""An optimistic-locking UpdateItem racing a replicated delete (DESIGN §4 rule 7).

What every object mapper sends: read the item at version v, then UpdateItem with the
condition ``version = v`` and ``SET version = v+1``. When a delete from another region
landed in between, the update succeeds on the tombstone (it has version v) and keeps
the attributes it does not name, ``_rep_deleted`` among them: a "zombie". By
last-writer-wins the update (v+1, live) beats the delete (v, tombstone), so both
regions must end live at v+1 with the update's data and no tombstone attributes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest

from replicator.apply.writer import ConditionalWriter, LocalWriter
from replicator.aws.factory import Clients
from replicator.aws.tables import ensure_table
from replicator.models import Change, Incoming, Meta, Mode, Outcome
from tests.mesh import B, C, Mesh, running_mesh

pytestmark = pytest.mark.timeout(120)

DIRECTIONS = [
    pytest.param((C, B), id="update in us-east-1"),
    pytest.param((B, C), id="update in eu-west-1"),
]


@pytest.fixture
async def two_regions(endpoints: dict[str, str], unique_name: str) -> AsyncIterator[Mesh]:
    async with running_mesh(endpoints, unique_name, regions=(B, C)) as running:
        yield running


def live(version: int, amount: str) -> Callable[[dict[str, Any] | None], bool]:
    def check(item: dict[str, Any] | None) -> bool:
        return (
            item is not None
            and "_rep_deleted" not in item
            and "_rep_expires" not in item
            and item["version"] == {"N": str(version)}
            and item.get("amount") == {"S": amount}
        )

    return check


def tombstone(version: int) -> Callable[[dict[str, Any] | None], bool]:
    def check(item: dict[str, Any] | None) -> bool:
        return (
            item is not None and "_rep_deleted" in item and item["version"] == {"N": str(version)}
        )

    return check


async def delete_then_wait_for_the_tombstone(mesh: Mesh, deleter: str, updater: str) -> None:
    await mesh.put(updater, "k1", 1, amount="5")
    await mesh.everywhere("k1", live(1, "5"), "the put to replicate")
    # The delete under optimistic locking, as a mapper sends it.
    await (await mesh.db(deleter)).delete_item(
        TableName=mesh.table,
        Key={"pk": {"S": "k1"}},
        ConditionExpression="version = :v",
        ExpressionAttributeValues={":v": {"N": "1"}},
    )
    await mesh.everywhere("k1", tombstone(1), "the replicated tombstone to land")


@pytest.mark.parametrize("regions", DIRECTIONS)
async def test_a_mapper_update_that_lands_on_a_replicated_tombstone_wins_everywhere(
    two_regions: Mesh, regions: tuple[str, str]
) -> None:
    updater, deleter = regions
    mesh = two_regions
    await delete_then_wait_for_the_tombstone(mesh, deleter, updater)
    # The application read version 1 before the delete landed; its update succeeds.
    await (await mesh.db(updater)).update_item(
        TableName=mesh.table,
        Key={"pk": {"S": "k1"}},
        ConditionExpression="version = :read",
        UpdateExpression="SET version = :next, amount = :amount",
        ExpressionAttributeValues={
            ":read": {"N": "1"},
            ":next": {"N": "2"},
            ":amount": {"S": "7"},
        },
    )
    await mesh.everywhere("k1", live(2, "7"), "the update to win, healed where it was made")
    await mesh.assert_converged()


async def test_a_put_instead_of_the_update_wins_too(two_regions: Mesh) -> None:
    mesh = two_regions
    await delete_then_wait_for_the_tombstone(mesh, B, C)
    await mesh.put(C, "k1", 2, amount="7")  # replaces the whole item: no zombie
    await mesh.everywhere("k1", live(2, "7"), "the put to win")
    await mesh.assert_converged()


ZOMBIE = {
    "pk": {"S": "k1"},
    "version": {"N": "2"},
    "amount": {"S": "7"},
    "_rep_version": {"N": "1"},
    "_rep_origin": {"S": B},
    "_rep_seq": {"S": "1".zfill(40)},
    "_rep_deleted": {"BOOL": True},
    "_rep_expires": {"N": "1700604800"},
}
TOMBSTONE_V2 = {**ZOMBIE, "_rep_version": {"N": "2"}}
UPDATED_AGAIN = {**ZOMBIE, "version": {"N": "3"}}


@pytest.mark.parametrize(
    ("stored", "expected", "left"),
    [
        pytest.param(ZOMBIE, Outcome.APPLIED, {"version": {"N": "2"}}, id="the zombie: healed"),
        # The looser condition (any tombstone at v+1) diverged in the protocol model: it
        # turned a legitimate tombstone into a live item.
        pytest.param(
            TOMBSTONE_V2, Outcome.SUPERSEDED, {"_rep_deleted": {"BOOL": True}}, id="tombstone v2"
        ),
        pytest.param(UPDATED_AGAIN, Outcome.SUPERSEDED, {"version": {"N": "3"}}, id="updated"),
    ],
)
async def test_the_local_heal_clears_only_that_zombie(
    endpoints: dict[str, str],
    unique_name: str,
    stored: dict[str, Any],
    expected: Outcome,
    left: dict[str, Any],
) -> None:
    meta = Meta(version="version")
    clients = Clients(endpoints)
    try:
        db = await clients.json("dynamodb", C)
        await ensure_table(db, unique_name, [("pk", "HASH", "S")])
        await db.put_item(TableName=unique_name, Item=stored)
        tombstones = ConditionalWriter(
            db, unique_name, region=C, meta=meta, mode=Mode.ACTIVE_ACTIVE, tombstone_ttl_seconds=1
        )
        heal = Change(
            keys={"pk": {"S": "k1"}},
            incoming=Incoming(Decimal(2), False, C, "5".zfill(40)),
            item={**ZOMBIE},
            sequence_number="5",
            created_at=0.0,
            record={},
            heals_zombie=True,
        )
        outcome = await LocalWriter(tombstones, db, meta=meta).put(heal, now=0.0)
        item = (await db.get_item(TableName=unique_name, Key={"pk": {"S": "k1"}}))["Item"]
    finally:
        await clients.aclose()
    assert outcome is expected
    assert left.items() <= item.items()
    if expected is Outcome.APPLIED:
        assert "_rep_deleted" not in item and "_rep_expires" not in item
        assert item["amount"] == {"S": "7"}
    else:
        assert item == stored
