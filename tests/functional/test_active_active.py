"""Active-active across three regions: the traps of last-writer-wins replication.

One replicator per region (star topology), each sending only the writes that
originated in its region. Every test ends with all regions agreeing, checked the
way readers see the tables.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from replicator.apply.writer import ConditionalWriter
from replicator.models import Change, Incoming, Meta, Mode, Outcome
from replicator.tools.verify import verify
from tests.e2e.helpers import wait_until
from tests.mesh import A, B, C, Mesh, running_mesh

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def mesh(endpoints: dict[str, str], unique_name: str) -> AsyncIterator[Mesh]:
    async with running_mesh(endpoints, unique_name) as running:
        yield running


def live(version: int, **data: str) -> Any:
    def check(item: dict[str, Any] | None) -> bool:
        return (
            item is not None
            and "_rep_deleted" not in item
            and item["version"] == {"N": str(version)}
            and all(item.get(k) == {"S": v} for k, v in data.items())
        )

    return check


def tombstone(version: int) -> Any:
    def check(item: dict[str, Any] | None) -> bool:
        return (
            item is not None and "_rep_deleted" in item and item["version"] == {"N": str(version)}
        )

    return check


async def test_a_delete_leaves_a_tombstone_everywhere_including_the_origin(mesh: Mesh) -> None:
    await mesh.put(A, "k", 1, v="a")
    await mesh.everywhere("k", live(1, v="a"), "the write to reach every region")
    await mesh.delete(A, "k")
    await mesh.everywhere("k", tombstone(1), "a tombstone in every region, A's own included")
    await mesh.assert_converged()


async def test_delete_then_recreate_continuing_from_the_tombstone_version(mesh: Mesh) -> None:
    await mesh.put(A, "k", 3, v="first")
    await mesh.everywhere("k", live(3), "v3 everywhere")
    await mesh.delete(B, "k")
    await mesh.everywhere("k", tombstone(3), "B's delete everywhere")
    await mesh.put(A, "k", 4, v="again")
    await mesh.everywhere("k", live(4, v="again"), "the re-create everywhere")
    await mesh.assert_converged()


async def test_equal_versions_in_two_regions_resolve_to_the_same_winner_everywhere(
    mesh: Mesh,
) -> None:
    await asyncio.gather(mesh.put(A, "k", 3, v="from A"), mesh.put(C, "k", 3, v="from C"))
    await mesh.everywhere("k", live(3, v="from C"), "the greater origin (C) to win everywhere")
    await mesh.assert_converged()


async def test_an_update_racing_a_delete_in_another_region_wins_by_version(mesh: Mesh) -> None:
    await mesh.put(B, "k", 3, v="base")
    await mesh.everywhere("k", live(3), "v3 everywhere")
    await asyncio.gather(mesh.put(A, "k", 4, v="updated"), mesh.delete(C, "k"))
    await mesh.everywhere("k", live(4, v="updated"), "the newer update to win over the delete")
    await mesh.assert_converged()


async def test_a_recreate_below_the_tombstone_is_a_counted_version_regression(mesh: Mesh) -> None:
    await mesh.put(A, "k", 5, v="old")
    await mesh.everywhere("k", live(5), "v5 everywhere")
    await mesh.delete(A, "k")
    await mesh.everywhere("k", tombstone(5), "the tombstone everywhere")
    await mesh.put(A, "k", 1, v="reset")  # breaks the active-active contract

    async def counted() -> bool:
        return mesh.metrics[A].total("version_regressions") >= 2  # one per other region

    await wait_until(counted, within=60, what="the regression to be counted for B and C")
    report = await verify(mesh.configs[A], recheck_delay=0.1)
    assert {d.kind for d in report.differences} == {"version regression"}
    assert "version regression" in str(report.differences[0])


async def test_an_app_update_to_a_replicated_item_still_replicates(mesh: Mesh) -> None:
    await mesh.put(A, "k", 1, v="a")
    await mesh.everywhere("k", live(1), "v1 everywhere")
    await (await mesh.db(B)).update_item(
        TableName=mesh.table,
        Key={"pk": {"S": "k"}},
        UpdateExpression="SET version = :v, v = :t",
        ExpressionAttributeValues={":v": {"N": "2"}, ":t": {"S": "edited in B"}},
    )
    await mesh.everywhere("k", live(2, v="edited in B"), "B's update everywhere")
    assert (await mesh.item(A, "k") or {})["_rep_origin"] == {"S": B}
    await mesh.assert_converged()


async def test_tombstone_expiry_is_not_replicated(mesh: Mesh) -> None:
    await mesh.put(A, "k", 2, v="a")
    await mesh.everywhere("k", live(2), "v2 everywhere")
    await mesh.delete(A, "k")
    await mesh.everywhere("k", tombstone(2), "the tombstone everywhere")
    await mesh.delete(B, "k")  # what TTL does to B's tombstone once _rep_expires passes

    async def skipped() -> bool:
        skips = mesh.metrics[B].status()["totals"]["skipped"]
        return int(skips.get("tombstone-expiry", 0)) >= 1

    await wait_until(skipped, within=60, what="B's replicator to skip its tombstone's expiry")
    assert tombstone(2)(await mesh.item(A, "k")) and tombstone(2)(await mesh.item(C, "k"))
    await mesh.assert_converged()


async def test_live_item_expiry_replicates_as_a_delete(mesh: Mesh) -> None:
    await mesh.put(C, "k", 7, v="short-lived")
    await mesh.everywhere("k", live(7), "v7 everywhere")
    await mesh.delete(C, "k")  # TTL expiry of a live item is a REMOVE like any other
    await mesh.everywhere("k", tombstone(7), "the expiry to delete it everywhere")
    await mesh.assert_converged()


async def test_a_late_replay_after_a_delete_resurrects_nothing_not_even_in_the_origin(
    mesh: Mesh,
) -> None:
    await mesh.put(B, "k", 2, v="from B")
    await mesh.everywhere("k", live(2), "B's v2 everywhere")
    replayed = await mesh.item(C, "k")  # what B's replicator wrote: the write a replay resends
    assert replayed is not None
    await mesh.delete(A, "k")
    await mesh.everywhere("k", tombstone(2), "A's delete everywhere, as A's local tombstone too")

    # A late batch of B's replicator (a lost lease, a Lambda retry) delivers v2 again.
    seq = replayed["_rep_seq"]["S"]
    change = Change(
        keys={"pk": {"S": "k"}},
        incoming=Incoming(Decimal(2), False, B, seq),
        item=replayed,
        sequence_number=seq.lstrip("0"),
        created_at=0.0,
        record={},
    )
    for region in (A, C):
        writer = ConditionalWriter(
            await mesh.db(region),
            mesh.table,
            region=region,
            meta=Meta(version="version"),
            mode=Mode.ACTIVE_ACTIVE,
            tombstone_ttl_seconds=7 * 86400,
        )
        assert await writer.put(change, now=0.0) is Outcome.SUPERSEDED
    await mesh.everywhere("k", tombstone(2), "the tombstone to survive the replay")
    await mesh.assert_converged()
