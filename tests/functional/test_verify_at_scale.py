"""Verify finds seeded damage by kind through bucket digests; repair fixes it (DESIGN §5b)."""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from replicator.apply.rule import visible
from replicator.apply.writer import ConditionalWriter
from replicator.aws.factory import Clients
from replicator.aws.tables import ensure_table
from replicator.config.schema import Config
from replicator.models import Change, Incoming, Meta, Mode, Outcome, pad_seq
from replicator.tools.repair import repair
from replicator.tools.verify import verify
from tests.e2e.helpers import SOURCE, TARGET, cli
from tests.mesh import A, C, region_config
from tests.records import image

pytestmark = pytest.mark.timeout(120)
META = Meta(version="version")


async def batch_put(client: Any, table: str, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), 25):
        chunk = items[start : start + 25]
        requests = {table: [{"PutRequest": {"Item": item}} for item in chunk]}
        await client.call("BatchWriteItem", {"RequestItems": requests})


@pytest.fixture
async def replicated(
    pair: tuple[Config, Path, Clients], unique_name: str
) -> tuple[Config, Path, Clients]:
    """600 keys in the source, each replicated to the target as the pipeline would write it."""
    _, _, clients = pair
    keys = [f"k{n:04}" for n in range(600)]
    await batch_put(
        await clients.json("dynamodb", SOURCE),
        unique_name,
        [image(k, 2, note=f"n{k}") for k in keys],
    )
    await batch_put(
        await clients.json("dynamodb", TARGET),
        unique_name,
        [image(k, 2, origin=SOURCE, note=f"n{k}") for k in keys],
    )
    return pair


async def test_verify_finds_each_seeded_kind_and_repair_leaves_nothing_to_find(
    replicated: tuple[Config, Path, Clients], unique_name: str
) -> None:
    config, path, clients = replicated
    source = await clients.json("dynamodb", SOURCE)
    target = await clients.json("dynamodb", TARGET)
    assert (await verify(config, recheck_delay=0.01)).differences == []
    for k in ("k0001", "k0002", "k0003"):  # deleted on the target only
        await target.delete_item(TableName=unique_name, Key={"pk": {"S": k}})
    for k in ("x1", "x2"):  # written on the target only
        await target.put_item(TableName=unique_name, Item=image(k, 1))
    for k in ("k0010", "k0011", "k0012", "k0013"):  # newer at the source, lost on the way
        await source.put_item(TableName=unique_name, Item=image(k, 3, note="new"))
    # A tombstone at the source that a stray write brought back to life on the target.
    await source.put_item(
        TableName=unique_name, Item=image("k0020", 4, origin=SOURCE, tombstone=True)
    )
    # A re-create below the target's tombstone.
    await target.put_item(
        TableName=unique_name, Item=image("k0030", 5, origin=SOURCE, tombstone=True)
    )
    await source.put_item(TableName=unique_name, Item=image("k0030", 1))

    result = cli("verify", "-c", str(path), "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    found = json.loads(result.stdout)
    assert Counter(d["kind"] for d in found["differences"]) == {
        "missing": 3,
        "extra": 2,
        "stale": 4,
        "resurrected": 1,
        "version regression": 1,
    }
    # Only the buckets holding a damaged key were compared key by key.
    assert found["differing_buckets"] <= 11

    repaired = cli("verify", "-c", str(path), "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "repair: 11 written" in repaired.stdout
    assert (await verify(config, recheck_delay=0.01)).differences == []


async def test_active_active_repair_delivers_the_winner_and_every_region_converges(
    endpoints: dict[str, str], unique_name: str
) -> None:
    # The history of issue 14, regions R, C, T: R deleted the key at v3 (local tombstone),
    # C re-created it at v6 (allowed: versions keep rising), T already holds C's v6,
    # and C's v6 has not reached R yet. Verify runs on R.
    r, c, t = C, A, "eu-west-1"
    config = region_config(r, unique_name, endpoints)
    clients = Clients(config.endpoints)
    try:
        for region in (r, c, t):
            await ensure_table(
                await clients.json("dynamodb", region), unique_name, [("pk", "HASH", "S")]
            )
        db = {region: await clients.json("dynamodb", region) for region in (r, c, t)}
        c_write = image("k", 6, v="from C")
        from_c = {**image("k", 6, origin=c, v="from C"), "_rep_seq": {"S": pad_seq("600")}}
        await db[r].put_item(TableName=unique_name, Item=image("k", 3, origin=r, tombstone=True))
        await db[c].put_item(TableName=unique_name, Item=c_write)
        await db[t].put_item(TableName=unique_name, Item=from_c)

        report = await verify(config, recheck_delay=0.01)
        fixed = await repair(config, report)

        # C's v6 now reaches R through the stream, as it would have anyway.
        writer = ConditionalWriter(
            db[r],
            unique_name,
            region=r,
            meta=META,
            mode=Mode.ACTIVE_ACTIVE,
            tombstone_ttl_seconds=86400 * 7,
        )
        late = Change(
            keys={"pk": {"S": "k"}},
            incoming=Incoming(Decimal(6), False, c, pad_seq("600")),
            item=c_write,
            sequence_number="600",
            created_at=0.0,
            record={},
        )
        assert await writer.put(late, now=0.0) in (Outcome.DUPLICATE, Outcome.APPLIED)
        seen = {}
        for region in (r, c, t):
            item = await db[region].get_item(TableName=unique_name, Key={"pk": {"S": "k"}})
            seen[region] = visible(item.get("Item"), META)
        winner = {"pk": "k", "version": 6, "v": "from C"}
        assert seen == {r: winner, c: winner, t: winner}, "the regions diverged for good"
        # Only R lacked the winner; repair delivered C's own v6, inventing nothing.
        assert [(d.kind, d.target) for d in report.differences] == [
            ("missing", f"{r}/{unique_name}")
        ]
        assert fixed.repaired == 1
        assert (await verify(config, recheck_delay=0.01)).differences == []
    finally:
        await clients.aclose()
