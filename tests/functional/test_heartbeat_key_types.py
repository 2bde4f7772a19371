"""Tables keyed by a number or a binary get the heartbeat canary too (DESIGN §7).

Through ``run_service``, as ``replicator run`` builds it: the canary reaches the target,
its lag and age are exported, and verify does not count it as user data.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from replicator.aws.factory import Clients
from replicator.aws.tables import ensure_table
from replicator.config.schema import load_config
from replicator.service.run import metrics_for, run_service
from replicator.telemetry.heartbeat import heartbeat_key
from replicator.tools.verify import verify
from tests.e2e.helpers import SOURCE, TARGET, wait_until, write_config
from tests.functional.test_lag import heartbeat, scraped

PREFIX = "__replicator_heartbeat__"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("schema", "user_key"),
    [
        ([("id", "HASH", "N")], {"id": {"N": "42"}}),
        ([("id", "HASH", "B")], {"id": {"B": b64(b"\x00\x01user")}}),
        (
            [("id", "HASH", "N"), ("at", "RANGE", "B")],
            {"id": {"N": "7"}, "at": {"B": b64(b"\xff")}},
        ),
    ],
    ids=["number", "binary", "number-and-binary-sort-key"],
)
async def test_a_table_keyed_by_a_number_or_a_binary_gets_a_heartbeat_that_verify_skips(
    endpoints: dict[str, str],
    unique_name: str,
    tmp_path: Path,
    schema: list[tuple[str, str, str]],
    user_key: dict[str, dict[str, object]],
) -> None:
    path = write_config(tmp_path / "r.yaml", endpoints, unique_name)
    path.write_text(path.read_text() + "heartbeat:\n  interval_seconds: 0.2\n")
    config = load_config(path)
    clients = Clients(endpoints)
    source = await clients.json("dynamodb", SOURCE)
    target = await clients.json("dynamodb", TARGET)
    await ensure_table(source, unique_name, schema, stream=True)
    await ensure_table(target, unique_name, schema)
    stop, metrics = asyncio.Event(), metrics_for(config)
    service = asyncio.create_task(run_service(config, stop=stop, metrics=metrics))
    canary = heartbeat_key(schema, PREFIX, SOURCE)
    try:
        await source.put_item(TableName=unique_name, Item={**user_key, "version": {"N": "1"}})

        async def arrived() -> bool:
            assert not service.done(), repr(service.exception())
            on_target = await target.get_item(TableName=unique_name, Key=canary)
            if "Item" not in on_target or not metrics.status()["pairs"]:
                return False
            return heartbeat(metrics)["lag_seconds"] is not None

        await wait_until(arrived, within=30, what="the heartbeat on the target")
        age = scraped(metrics, "replicator_heartbeat_age_seconds", target_region=TARGET)
        assert 0 <= age < 30

        async def user_item_replicated() -> bool:
            return "Item" in await target.get_item(TableName=unique_name, Key=user_key)

        await wait_until(user_item_replicated, within=30, what="the user item on the target")
        report = await verify(config, recheck_delay=0.1)
        assert report.differences == []
        assert report.compared == 1  # the user item; the canary is not user data
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await service
        await clients.aclose()
        metrics.shutdown()
