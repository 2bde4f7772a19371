"""The conflict feed end to end (DESIGN §4b), on moto, through ``run_service``.

Two regions write the same key at the same version before either replicator runs, so
neither write descends from the other: last-writer-wins keeps C's (the greater origin)
and discards A's. The feed must hold exactly that lost write, with both sides, and a
replay of both streams from their start must not add a second entry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from replicator.aws.factory import Clients
from replicator.aws.tables import ensure_table
from replicator.pipeline.conflicts import entry_id
from tests.e2e.helpers import cli, wait_until
from tests.mesh import A, C, Mesh, running_mesh

pytestmark = pytest.mark.timeout(120)
REGIONS = (A, C)  # C > A: C wins a tie


async def scan(clients: Clients, region: str, table: str) -> list[dict[str, Any]]:
    db = await clients.json("dynamodb", region)
    items: list[dict[str, Any]] = (await db.scan(TableName=table, ConsistentRead=True))["Items"]
    return items


async def clear_checkpoints(clients: Clients, region: str, table: str) -> None:
    db = await clients.json("dynamodb", region)
    for item in await scan(clients, region, table):
        await db.delete_item(TableName=table, Key={"pk": item["pk"], "sk": item["sk"]})


async def concurrent_writes(clients: Clients, table: str) -> None:
    """v1 of key k written in A and in C, both before any replicator reads a stream."""
    for region in REGIONS:
        db = await clients.json("dynamodb", region)
        await ensure_table(
            db, table, [("pk", "HASH", "S")], stream=True, ttl_attribute="_rep_expires"
        )
        await db.put_item(
            TableName=table,
            Item={"pk": {"S": "k"}, "version": {"N": "1"}, "v": {"S": f"from {region}"}},
        )


async def drained(mesh: Mesh) -> None:
    """Each region's write settled in the other (applied, refused or a duplicate) and C's
    write kept in both; an entry is written before its write counts as settled."""

    def settled_in_other(region: str) -> bool:
        outcomes = ("applied", "superseded", "duplicate")
        return sum(mesh.metrics[region].total(o) for o in outcomes) >= 1

    async def settled() -> bool:
        a_item, c_item = await mesh.item(A, "k"), await mesh.item(C, "k")
        return (
            settled_in_other(A)
            and settled_in_other(C)
            and a_item is not None
            and a_item.get("v") == {"S": f"from {C}"}
            and c_item is not None
            and c_item.get("v") == {"S": f"from {C}"}
        )

    await wait_until(settled, within=60, what="both writes settled in both regions")


async def test_the_feed_holds_exactly_the_lost_write_once(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    clients = Clients(endpoints)
    feed = f"{unique_name}-conflicts"
    try:
        await concurrent_writes(clients, unique_name)
        async with running_mesh(endpoints, unique_name, REGIONS) as mesh:
            await drained(mesh)

            conflicts = mesh.metrics[C].prometheus_text().decode()
            assert mesh.metrics[C].status()["totals"]["conflicts"] == 1  # replicator status
            # Stored where C's replicator detected it: C's write landing on A's own write.
            assert (await mesh.item(A, "k") or {}).get("_rep_kv") == {"M": {C: {"N": "2"}}}
        (entry,) = await scan(clients, C, feed)
        assert await scan(clients, A, feed) == []  # each loss is reported by one region
        assert entry["detected_in"] == {"S": A}
        assert (entry["loser_origin"], entry["loser_version"]) == ({"S": A}, {"N": "1"})
        assert (entry["winner_origin"], entry["winner_version"]) == ({"S": C}, {"N": "1"})
        assert entry["loser_tombstone"] == entry["winner_tombstone"] == {"BOOL": False}
        assert entry["loser_image"]["M"]["v"] == {"S": f"from {A}"}
        assert entry["winner_image"]["M"]["v"] == {"S": f"from {C}"}
        assert entry["loser_kv"] == {"M": {A: {"N": "2"}}}
        assert entry["winner_kv"] == {"M": {C: {"N": "2"}}}
        assert entry["key"] == {"M": {"pk": {"S": "k"}}}
        assert entry["id"] == {"S": entry_id(entry["pk"]["S"], entry["sk"]["S"])}
        assert_counted(
            conflicts, {"source_table": unique_name, "loser_region": A, "winner_region": C}
        )

        # Both streams replayed from their start: every write comes again.
        for region in REGIONS:
            await clear_checkpoints(clients, region, f"{unique_name}-control")
        async with running_mesh(endpoints, unique_name, REGIONS) as mesh:
            await drained(mesh)
        assert await scan(clients, C, feed) == [entry]
        assert await scan(clients, A, feed) == []
        config_path = tmp_path / "replicator.yaml"
        config_path.write_text(yaml.safe_dump(mesh.configs[A].model_dump(mode="json")))
        the_id = entry["id"]["S"]
        operator_sees_the_entry(str(config_path), the_id)

        restored = cli("conflicts", "resolve", the_id, "--keep", "loser", "-c", str(config_path))
        assert restored.returncode == 0, restored.stderr
        async with running_mesh(endpoints, unique_name, REGIONS) as mesh:
            await mesh.everywhere(
                "k",
                lambda item: (
                    item is not None
                    and item["version"] == {"N": "2"}
                    and item["v"] == {"S": f"from {A}"}
                ),
                "A's lost write, restored at v2, in both regions",
            )
        (closed,) = await scan(clients, C, feed)  # restoring it lost nothing new
        assert closed["resolved"] == {"S": "loser"}
        again = cli("conflicts", "resolve", the_id, "--keep", "winner", "-c", str(config_path))
        assert again.returncode == 1 and "resolved already" in again.stderr
    finally:
        await clients.aclose()


async def test_a_delete_that_loses_to_a_concurrent_update_is_in_the_feed(
    endpoints: dict[str, str], unique_name: str
) -> None:
    """A writes v3 and deletes it; C, not knowing of either, writes v4. C's write wins
    everywhere, and A's delete is the one loss: reported once, by whichever region met it
    (A's local tombstone refused by C's write, case B3, or C's write over it, case A)."""
    clients = Clients(endpoints)
    feed = f"{unique_name}-conflicts"
    try:
        for region in REGIONS:
            db = await clients.json("dynamodb", region)
            await ensure_table(
                db, unique_name, [("pk", "HASH", "S")], stream=True, ttl_attribute="_rep_expires"
            )
        a, c = await clients.json("dynamodb", A), await clients.json("dynamodb", C)
        key = {"pk": {"S": "k"}}
        await a.put_item(TableName=unique_name, Item={**key, "version": {"N": "3"}})
        await a.delete_item(TableName=unique_name, Key=key)
        await c.put_item(TableName=unique_name, Item={**key, "version": {"N": "4"}})
        async with running_mesh(endpoints, unique_name, REGIONS) as mesh:
            await mesh.everywhere(
                "k",
                lambda item: item is not None and item["version"] == {"N": "4"},
                "C's v4 to win in both regions",
            )

            async def reported() -> bool:
                return len(await scan(clients, A, feed) + await scan(clients, C, feed)) >= 1

            await wait_until(reported, within=30, what="A's lost delete to be recorded")
            await mesh.assert_converged()
        (entry,) = await scan(clients, A, feed) + await scan(clients, C, feed)
        loser = (entry["loser_origin"], entry["loser_version"], entry["loser_tombstone"])
        assert loser == ({"S": A}, {"N": "3"}, {"BOOL": True})
        assert (entry["winner_origin"], entry["winner_version"]) == ({"S": C}, {"N": "4"})
    finally:
        await clients.aclose()


def operator_sees_the_entry(config_path: str, entry_id: str) -> None:
    """``replicator conflicts list/show`` from A's config read every region's feed."""
    listed = cli("conflicts", "list", "-c", config_path, "--json", "--since", "1h")
    assert listed.returncode == 0, listed.stderr
    (shown,) = json.loads(listed.stdout)
    assert shown["id"] == entry_id and shown["detected_in"] == A
    assert shown["key"] == {"pk": {"S": "k"}}
    assert {k: shown["loser"][k] for k in ("origin", "version", "tombstone")} == {
        "origin": A,
        "version": 1,
        "tombstone": False,
    }
    assert (shown["winner"]["origin"], shown["winner"]["version"]) == (C, 1)
    detail = cli("conflicts", "show", entry_id, "-c", config_path)
    assert detail.returncode == 0, detail.stderr
    (row,) = [line for line in detail.stdout.splitlines() if f"from {A}" in line]
    assert f"from {C}" in row  # the attribute that differs, side by side
    unknown = cli("conflicts", "show", "0123456789abcdef", "-c", config_path)
    assert unknown.returncode == 2 and "no conflict entry has id" in unknown.stderr


def assert_counted(text: str, labels: dict[str, str]) -> None:
    (family,) = [
        f for f in text_string_to_metric_families(text) if f.name == "replicator_conflicts"
    ]
    counted = {
        tuple(sorted((k, v) for k, v in s.labels.items() if k in labels)): s.value
        for s in family.samples
        if s.name == "replicator_conflicts_total"
    }
    assert counted == {tuple(sorted(labels.items())): 1.0}
