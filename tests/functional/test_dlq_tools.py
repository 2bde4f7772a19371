"""``replicator dlq``: poison records are listed with their reasons and replay once fixed."""

from __future__ import annotations

import asyncio
import base64
import json
import zlib
from pathlib import Path

import pytest

from replicator.aws.factory import Clients
from replicator.aws.tables import CONTROL_KEY, ensure_table
from replicator.config.schema import Config
from replicator.models import TargetRef
from replicator.pipeline.dlq import DeadLetterQueue
from replicator.service.run import metrics_for, run_service
from replicator.tools.dlq import list_entries
from replicator.tools.dlq_entry import read_entry
from tests.e2e.helpers import SOURCE, TARGET, cli, wait_until
from tests.records import image, record

pytestmark = pytest.mark.timeout(120)


async def test_poison_records_are_listed_and_replay_applies_them_once_fixed_at_the_source(
    pair: tuple[Config, Path, Clients], unique_name: str
) -> None:
    config, path, clients = pair
    source = await clients.json("dynamodb", SOURCE)
    target = await clients.json("dynamodb", TARGET)
    for key in ("poison-1", "poison-2"):
        await source.put_item(TableName=unique_name, Item={"pk": {"S": key}, "n": {"S": "x"}})
    await source.put_item(TableName=unique_name, Item=image("fine", 1))

    stop = asyncio.Event()
    service = asyncio.create_task(run_service(config, stop=stop, metrics=metrics_for(config)))

    async def dead_lettered() -> bool:
        return len(await list_entries(config)) == 2

    try:
        await wait_until(dead_lettered, within=60, what="two DLQ entries")
    finally:
        stop.set()
        await service

    listed = cli("dlq", "list", "-c", str(path), "--json")
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)
    assert sorted(e["keys"] for e in entries) == ["pk=poison-1", "pk=poison-2"]
    assert all("no numeric version attribute" in e["reason"] for e in entries)
    assert all(e["attempts"] >= 1 and e["target"] == f"{TARGET}/{unique_name}" for e in entries)
    shown = cli("dlq", "show", "-c", str(path), entries[0]["id"])
    assert '"eventName": "INSERT"' in shown.stdout, shown.stdout

    # Still broken at the source: replay keeps the entry and says why.
    kept = cli("dlq", "replay", "-c", str(path), "--id", entries[0]["id"])
    assert kept.returncode == 1 and "still not replicable" in kept.stdout, kept.stdout

    for key in ("poison-1", "poison-2"):  # the application fixes the items
        await source.put_item(TableName=unique_name, Item=image(key, 1, n="fixed"))
    replayed = cli("dlq", "replay", "-c", str(path), "--all")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "replay: 2 applied and removed, 0 kept" in replayed.stdout
    assert await list_entries(config) == []
    for key in ("poison-1", "poison-2"):
        got = await target.get_item(TableName=unique_name, Key={"pk": {"S": key}})
        assert got["Item"]["n"] == {"S": "fixed"}


async def test_purge_removes_only_entries_older_than_asked(
    pair: tuple[Config, Path, Clients], unique_name: str
) -> None:
    config, path, clients = pair
    home = await clients.json("dynamodb", SOURCE)
    await ensure_table(home, config.dlq_table, CONTROL_KEY)
    dlq = DeadLetterQueue(home, config.dlq_table)
    target = config.pairs[0].targets[0]
    ref = TargetRef(target.region, target.table)
    await dlq.put(
        source_table=unique_name,
        target=ref,
        record=record("INSERT", 5, new=image("a", 1)),
        reason="old",
    )
    old_row = (await home.scan(TableName=config.dlq_table))["Items"][0]
    await home.put_item(TableName=config.dlq_table, Item={**old_row, "failed_at": {"N": "1"}})
    await dlq.put(
        source_table=unique_name,
        target=ref,
        record=record("INSERT", 6, new=image("b", 1)),
        reason="new",
    )
    bad = cli("dlq", "purge", "-c", str(path), "--older-than", "soon")
    assert bad.returncode == 2 and "is not a duration" in bad.stderr
    purged = cli("dlq", "purge", "-c", str(path), "--older-than", "1d")
    assert "purged 1 entries" in purged.stdout, purged.stdout + purged.stderr
    assert [e.reason for e in await list_entries(config)] == ["new"]


def test_entries_are_read_whether_the_record_is_text_compressed_or_left_out() -> None:
    stream_record = record("INSERT", 7, new=image("a", 1))
    base = {
        "pk": {"S": "t#eu-west-1#t"},
        "sk": {"S": "7".zfill(40)},
        "target_region": {"S": "eu-west-1"},
        "target_table": {"S": "t"},
        "reason": {"S": "ValidationException: too large"},
        "failed_at": {"N": "100"},
    }
    text = read_entry({**base, "record": {"S": json.dumps(stream_record)}})
    packed = base64.b64encode(zlib.compress(json.dumps(stream_record).encode())).decode()
    compressed = read_entry({**base, "record": {"B": packed}, "attempts": {"N": "3"}})
    omitted = read_entry(
        {**base, "keys": {"M": {"pk": {"S": "a"}}}, "images_omitted": {"BOOL": True}}
    )
    assert text.key_text() == compressed.key_text() == omitted.key_text() == "pk=a"
    assert compressed.record == stream_record and compressed.attempts == 3
    assert omitted.record is None and omitted.source_table == "t"
