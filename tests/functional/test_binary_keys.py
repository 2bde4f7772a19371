"""The operator's tools on a table keyed by a binary (``B``) partition key.

A binary key once reached the tools as bytes and was named by ``str(bytes)``: verify
re-read a key that does not exist and reported no difference where there were some,
backfill stopped after its first page, ``dlq replay`` dropped an entry as settled
without re-driving it, and repair wrote under a key of its own making. Each tool here
runs as the CLI runs it, against moto.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from replicator.aws.factory import Clients
from replicator.aws.json_client import DynamoDB
from replicator.aws.tables import ensure_table
from replicator.config.schema import Config, load_config
from replicator.models import WireItem
from replicator.service.run import metrics_for, run_service
from replicator.tools.backfill import backfill
from replicator.tools.dlq import list_entries, replay
from replicator.tools.repair import repair
from replicator.tools.verify import verify
from tests.e2e.helpers import SOURCE, TARGET, wait_until, write_config
from tests.functional.test_backfill import Recorder
from tests.functional.test_verify_at_scale import batch_put

pytestmark = pytest.mark.timeout(120)

BINARY_KEY = [("pk", "HASH", "B")]


def key(raw: bytes) -> WireItem:
    return {"pk": {"B": base64.b64encode(raw).decode()}}


def item(raw: bytes, version: int, **extra: dict[str, str]) -> WireItem:
    return {**key(raw), "version": {"N": str(version)}, **extra}


@pytest.fixture
async def binary_pair(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> AsyncIterator[tuple[Config, DynamoDB, DynamoDB]]:
    """A one-way pair whose tables are keyed by a binary pk: config, source, target."""
    config = load_config(write_config(tmp_path / "replicator.yaml", endpoints, unique_name))
    clients = Clients(config.endpoints)
    try:
        source = await clients.json("dynamodb", SOURCE)
        target = await clients.json("dynamodb", TARGET)
        await ensure_table(source, unique_name, BINARY_KEY, stream=True)
        await ensure_table(target, unique_name, BINARY_KEY)
        yield config, source, target
    finally:
        await clients.aclose()


async def stored(client: DynamoDB, table: str, raw: bytes) -> WireItem | None:
    answer = await client.get_item(TableName=table, Key=key(raw), ConsistentRead=True)
    found: WireItem | None = answer.get("Item")
    return found


async def test_verify_reports_each_difference_and_repair_writes_under_the_same_key(
    binary_pair: tuple[Config, DynamoDB, DynamoDB], unique_name: str
) -> None:
    config, source, target = binary_pair
    # No replicator runs: a lost stream range, a stale copy and a stray local write.
    await source.put_item(TableName=unique_name, Item=item(b"\x00lost", 3))
    await source.put_item(TableName=unique_name, Item=item(b"\xffbehind", 2, v={"S": "new"}))
    await target.put_item(TableName=unique_name, Item=item(b"\xffbehind", 1, v={"S": "old"}))
    await target.put_item(TableName=unique_name, Item=item(b"\x01stray", 1))
    await source.put_item(TableName=unique_name, Item=item(b"\x02same", 1))
    await target.put_item(TableName=unique_name, Item=item(b"\x02same", 1))

    report = await verify(config, recheck_delay=0.01)

    found = sorted((d.kind, d.key[0][2]) for d in report.differences)
    assert found == sorted(
        [
            ("extra", key(b"\x01stray")["pk"]["B"]),
            ("missing", key(b"\x00lost")["pk"]["B"]),
            ("stale", key(b"\xffbehind")["pk"]["B"]),
        ]
    )
    fixed = await repair(config, report)
    assert fixed.repaired == 3
    assert (await stored(target, unique_name, b"\x00lost") or {})["version"] == {"N": "3"}
    assert (await stored(target, unique_name, b"\xffbehind") or {})["v"] == {"S": "new"}
    assert (await verify(config, recheck_delay=0.01)).differences == []


async def test_a_backfill_of_many_pages_of_binary_keys_leaves_no_difference(
    binary_pair: tuple[Config, DynamoDB, DynamoDB], unique_name: str
) -> None:
    config, source, _ = binary_pair
    items = [item(n.to_bytes(2, "big") + b"\x80", 1) for n in range(1100)]
    await batch_put(source, unique_name, items)

    summary = await backfill(config, Recorder(), segments=2, page_items=200)

    assert summary.scanned == 1100
    assert (await verify(config, recheck_delay=0.01)).differences == []


async def test_a_dead_lettered_binary_keyed_record_is_replayed_onto_the_target(
    binary_pair: tuple[Config, DynamoDB, DynamoDB], unique_name: str
) -> None:
    config, source, target = binary_pair
    raw = b"\x00\xffpoison"
    await source.put_item(TableName=unique_name, Item={**key(raw), "n": {"S": "no version"}})
    stop = asyncio.Event()
    service = asyncio.create_task(run_service(config, stop=stop, metrics=metrics_for(config)))

    async def dead_lettered() -> bool:
        if service.done():
            service.result()
        return len(await list_entries(config)) == 1

    try:
        await wait_until(dead_lettered, within=60, what="the DLQ entry")
    finally:
        stop.set()
        await service
    [entry] = await list_entries(config)
    assert entry.keys == key(raw)

    await source.put_item(TableName=unique_name, Item=item(raw, 1, n={"S": "fixed"}))
    result = await replay(config)

    assert [e.id for e in result.settled] == [entry.id] and result.failed == []
    assert (await stored(target, unique_name, raw) or {}).get("n") == {"S": "fixed"}
    assert await list_entries(config) == []
