"""The service as ``replicator run`` builds it, a day after its stream rolled a shard over.

A shard is closed every few hours and no longer listed a day later; its checkpoint (read
to the end) is then deleted at start-up. The deletion once went to a client method that
did not exist: every start of a deployment about 28 hours old stopped with an
AttributeError, until the checkpoint was removed by hand.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from replicator.aws.factory import Clients
from replicator.aws.json_client import DynamoDB
from replicator.aws.tables import CONTROL_KEY, describe, ensure_table
from replicator.config.schema import load_config
from replicator.models import Checkpoint, TargetRef
from replicator.pipeline.checkpoint import CheckpointStore
from replicator.service.run import metrics_for, run_service
from tests.e2e.helpers import SOURCE, TARGET, create_tables, wait_until, write_config

pytestmark = pytest.mark.timeout(60)

GONE = "shardId-00000001700000000000-retired"


async def test_a_checkpoint_of_a_shard_no_longer_listed_is_deleted_and_the_service_replicates(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    config = load_config(write_config(tmp_path / "r.yaml", endpoints, unique_name))
    await create_tables(config)
    clients = Clients(endpoints)
    try:
        source = await clients.json("dynamodb", SOURCE)
        target = await clients.json("dynamodb", TARGET)
        await ensure_table(source, config.control_table, CONTROL_KEY)
        described = await describe(source, unique_name)
        assert described is not None
        checkpoints = CheckpointStore(source, config.control_table)
        retired = Checkpoint(
            GONE, TargetRef(TARGET, unique_name), "4" * 21, True, described["LatestStreamArn"]
        )
        assert await checkpoints.save(unique_name, retired)
        item = {"pk": {"S": "after-the-roll-over"}, "version": {"N": "1"}}
        await source.put_item(TableName=unique_name, Item=item)

        stop = asyncio.Event()
        metrics = metrics_for(config)
        service = asyncio.create_task(run_service(config, stop=stop, metrics=metrics))
        try:

            async def replicated_and_forgotten() -> bool:
                if service.done():
                    service.result()  # raises what stopped the service
                    raise AssertionError("the service stopped before it replicated")
                stored = await held(target, unique_name, item["pk"])
                return stored == item and GONE not in await shards(checkpoints, unique_name)

            await wait_until(
                replicated_and_forgotten, within=30, what="replication past the gone shard"
            )
            # A shard read to its end lost nothing: no alarm.
            assert metrics.total("trimmed") == 0
        finally:
            stop.set()
            async with asyncio.timeout(20):
                await service  # a clean drain, not a crash
            metrics.shutdown()
    finally:
        await clients.aclose()


async def held(client: DynamoDB, table: str, pk: dict[str, str]) -> dict[str, object] | None:
    answer = await client.get_item(TableName=table, Key={"pk": pk}, ConsistentRead=True)
    item = answer.get("Item")
    if item is None:
        return None
    return {k: v for k, v in item.items() if not k.startswith("_rep_")}


async def shards(checkpoints: CheckpointStore, table: str) -> set[str]:
    return {shard for shard, _ in await checkpoints.load(table)}
