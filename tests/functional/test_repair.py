"""``verify --repair`` fixes what the conflict rule cannot, and never races the stream."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from replicator.apply.writer import ConditionalWriter
from replicator.aws.factory import Clients
from replicator.config.schema import Config
from replicator.models import Change, Incoming, Meta, Mode, Outcome, pad_seq
from replicator.tools.repair import repair
from replicator.tools.verify import verify
from tests.e2e.helpers import SOURCE, TARGET, cli

pytestmark = pytest.mark.timeout(120)


def item(key: str, version: int, **extra: dict[str, str]) -> dict[str, dict[str, str]]:
    return {"pk": {"S": key}, "version": {"N": str(version)}, **extra}


async def test_repair_fixes_missing_stale_and_extra_keys_and_then_verify_is_clean(
    pair: tuple[Config, Path, Clients], unique_name: str
) -> None:
    config, path, clients = pair
    source = await clients.json("dynamodb", SOURCE)
    target = await clients.json("dynamodb", TARGET)
    # No replicator runs: these writes are a lost stream range and stray local writes.
    await source.put_item(TableName=unique_name, Item=item("lost", 3))
    await source.put_item(TableName=unique_name, Item=item("behind", 2, v={"S": "source"}))
    await target.put_item(TableName=unique_name, Item=item("behind", 9, v={"S": "stray"}))
    await target.put_item(TableName=unique_name, Item=item("stray", 1))

    report = await verify(config, recheck_delay=0.01)
    assert sorted((d.kind, d.key[0][2]) for d in report.differences) == [
        ("extra", "stray"),
        ("missing", "lost"),
        ("stale", "behind"),
    ]
    result = cli("verify", "-c", str(path), "--repair")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "repair: 3 written" in result.stdout
    assert result.stdout.rstrip().endswith("keys compared)")
    assert "\n0 differences" in result.stdout


async def test_repair_skips_a_key_the_stream_changed_after_verify(
    pair: tuple[Config, Path, Clients], unique_name: str
) -> None:
    config, _, clients = pair
    source = await clients.json("dynamodb", SOURCE)
    target = await clients.json("dynamodb", TARGET)
    await source.put_item(TableName=unique_name, Item=item("k", 2))
    await target.put_item(TableName=unique_name, Item=item("k", 1))
    report = await verify(config, recheck_delay=0.01)
    assert [d.kind for d in report.differences] == ["stale"]

    # The pipeline delivers a newer write before repair runs: repair must not undo it.
    newer = item("k", 3, _rep_origin={"S": SOURCE}, _rep_version={"N": "3"})
    await target.put_item(TableName=unique_name, Item=newer)
    fixed = await repair(config, report)
    assert (fixed.repaired, len(fixed.moved)) == (0, 1)
    stored = await target.get_item(TableName=unique_name, Key={"pk": {"S": "k"}})
    assert stored["Item"]["version"] == {"N": "3"}


async def test_a_repaired_item_is_replaced_by_the_next_stream_write_of_its_origin(
    pair: tuple[Config, Path, Clients], unique_name: str
) -> None:
    config, _, clients = pair
    source = await clients.json("dynamodb", SOURCE)
    await source.put_item(TableName=unique_name, Item=item("k", 5))
    fixed = await repair(config, await verify(config, recheck_delay=0.01))
    assert fixed.repaired == 1
    # No _rep_seq on the repaired item: the fence lets the origin's next write through.
    stored = await (await clients.json("dynamodb", TARGET)).get_item(
        TableName=unique_name, Key={"pk": {"S": "k"}}
    )
    assert "_rep_seq" not in stored["Item"]
    assert stored["Item"]["_rep_origin"] == {"S": SOURCE}
    writer = ConditionalWriter(
        await clients.json("dynamodb", TARGET),
        unique_name,
        region=TARGET,
        meta=Meta(version="version"),
        mode=Mode.ONE_WAY,
        tombstone_ttl_seconds=7 * 86400,
    )
    next_write = Change(
        keys={"pk": {"S": "k"}},
        incoming=Incoming(Decimal(6), False, SOURCE, pad_seq("7")),
        item=item("k", 6),
        sequence_number="7",
        created_at=0.0,
        record={},
    )
    assert await writer.put(next_write, now=0.0) is Outcome.APPLIED


async def test_repair_skips_a_key_whose_stream_position_moved_even_at_the_same_version(
    pair: tuple[Config, Path, Clients], unique_name: str
) -> None:
    config, _, clients = pair
    source = await clients.json("dynamodb", SOURCE)
    target = await clients.json("dynamodb", TARGET)
    await source.put_item(TableName=unique_name, Item=item("k", 2, v={"S": "source"}))
    replicated = {
        **item("k", 2, v={"S": "old"}),
        "_rep_origin": {"S": SOURCE},
        "_rep_version": {"N": "2"},
        "_rep_seq": {"S": pad_seq("10")},
    }
    await target.put_item(TableName=unique_name, Item=replicated)
    report = await verify(config, recheck_delay=0.01)
    assert [d.kind for d in report.differences] == ["stale"]

    # A one-way re-create at the same version lands from the stream: only _rep_seq moved.
    moved = {**replicated, "v": {"S": "source"}, "_rep_seq": {"S": pad_seq("20")}}
    await target.put_item(TableName=unique_name, Item=moved)
    fixed = await repair(config, report)
    assert (fixed.repaired, len(fixed.moved)) == (0, 1)
    stored = await target.get_item(TableName=unique_name, Key={"pk": {"S": "k"}})
    assert stored["Item"]["_rep_seq"] == {"S": pad_seq("20")}
