"""A one-way pair whose source table streams to a Kinesis stream, run as ``replicator run``
runs it (``service.run``, the production factory); the ``kinesis_pair`` fixture."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from replicator.aws.factory import Clients
from replicator.aws.json_client import Kinesis
from replicator.aws.tables import CONTROL_KEY, ensure_table
from replicator.config.schema import Config, load_config
from replicator.models import Checkpoint, TargetRef
from replicator.pipeline.checkpoint import CheckpointStore
from replicator.service.run import metrics_for, run_service
from replicator.telemetry.metrics import Metrics
from tests.e2e.helpers import SOURCE, TARGET, create_tables, write_config
from tests.kinesis_changes import put_changes


class KinesisPair:
    """A one-way pair whose source table streams to a 2-shard Kinesis stream of its name."""

    def __init__(self, config: Config, path: Path, clients: Clients, kinesis: Kinesis) -> None:
        self.config, self.path, self.clients, self.kinesis = config, path, clients, kinesis
        self.table = config.pairs[0].source_table
        self.target = TargetRef(TARGET, self.table)
        self.rng = random.Random(11)

    async def put(self, documents: list[dict[str, Any]]) -> list[dict[str, str]]:
        return await put_changes(self.kinesis, self.table, documents, rng=self.rng)

    async def checkpoints(self) -> dict[str, Checkpoint]:
        home = await self.clients.json("dynamodb", SOURCE)
        found = await CheckpointStore(home, self.config.control_table).load(self.table)
        return {shard: cp for (shard, target), cp in found.items() if target == self.target}

    async def arrivals(self) -> list[float]:
        """Every record's arrival time, over all shards."""
        times = []
        for shard in (await self.kinesis.list_shards(StreamName=self.table))["Shards"]:
            iterator = await self.kinesis.get_shard_iterator(
                StreamName=self.table, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )
            page = await self.kinesis.get_records(ShardIterator=iterator["ShardIterator"])
            times += [float(r["ApproximateArrivalTimestamp"]) for r in page["Records"]]
        return sorted(times)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[tuple[asyncio.Task[None], Metrics]]:
        """``replicator run`` until the block ends; then it must drain and stop cleanly."""
        stop = asyncio.Event()
        metrics = metrics_for(self.config)
        service = asyncio.create_task(run_service(self.config, stop=stop, metrics=metrics))
        try:
            yield service, metrics
        finally:
            stop.set()
            try:
                async with asyncio.timeout(20):
                    await service
            finally:
                metrics.shutdown()


@pytest.fixture
async def kinesis_pair(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> AsyncIterator[KinesisPair]:
    path = write_config(
        tmp_path / "replicator.yaml",
        endpoints,
        unique_name,
        kinesis_stream=unique_name,
        tombstone_ttl="3d",
    )
    config = load_config(path)
    await create_tables(config)
    clients = Clients(endpoints)
    try:
        kinesis = await clients.json("kinesis", SOURCE)
        await kinesis.create_stream(StreamName=unique_name, ShardCount=2)
        # Read by the test before the service creates it.
        home = await clients.json("dynamodb", SOURCE)
        await ensure_table(home, config.control_table, CONTROL_KEY)
        yield KinesisPair(config, path, clients, kinesis)
    finally:
        await clients.aclose()


def alive(service: asyncio.Task[None]) -> None:
    if service.done():
        service.result()  # raises what stopped the service
        raise AssertionError("the service stopped on its own")
