"""A Kinesis pair through ``replicator run`` (``service.run``, the production factory), its
start-up checks, and ``replicator replay`` (DESIGN §4c)."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from pathlib import Path

import pytest
import yaml

from replicator.aws.factory import Clients
from replicator.config.schema import load_config
from replicator.errors import ConfigError
from replicator.service.run import build_pipelines, metrics_for
from replicator.stream.positions import at_time
from tests.e2e.helpers import SOURCE, TARGET, cli, create_tables, wait_until, write_config
from tests.functional.kinesis_rig import KinesisPair, alive
from tests.kinesis_changes import history, needs_kinesis_decode

pytestmark = pytest.mark.timeout(60)


async def test_run_reads_every_shard_and_checkpoints_each(kinesis_pair: KinesisPair) -> None:
    placed = await kinesis_pair.put(history(kinesis_pair.table, ts=1_700_000_000_000_000))
    shards = {p["ShardId"] for p in placed}
    assert len(shards) == 2, "the random hash keys put records on both shards"
    arn = f"arn:aws:kinesis:{SOURCE}:123456789012:stream/{kinesis_pair.table}"

    async with kinesis_pair.running() as (service, metrics):

        async def every_shard_checkpointed() -> bool:
            alive(service)
            return set(await kinesis_pair.checkpoints()) == shards

        await wait_until(every_shard_checkpointed, within=30, what="a checkpoint per shard")
        assert metrics.total("records_read") == len(placed)
        assert {cp.stream_arn for cp in (await kinesis_pair.checkpoints()).values()} == {arn}
        exported = metrics.prometheus_text().decode()
        for shard in shards:
            assert re.search(
                rf'replicator_kinesis_millis_behind_latest\{{[^}}]*shard_id="{shard}"', exported
            ), shard
        assert metrics.total("trimmed") == 0


@needs_kinesis_decode
async def test_run_replicates_a_kinesis_pair_to_its_target(kinesis_pair: KinesisPair) -> None:
    # End to end: needs the decode of Kinesis records and rule K (issue 25, K1).
    placed = await kinesis_pair.put(history(kinesis_pair.table, ts=1_700_000_000_000_000))
    last = {p["ShardId"]: p["SequenceNumber"] for p in placed}  # put in order per shard
    target = await kinesis_pair.clients.json("dynamodb", TARGET)

    async def visible(pk: str) -> int | None:
        answer = await target.get_item(
            TableName=kinesis_pair.table, Key={"pk": {"S": pk}}, ConsistentRead=True
        )
        item = answer.get("Item")
        if item is None or "_rep_deleted" in item:
            return None
        return int(item["version"]["N"])

    async with kinesis_pair.running() as (service, _):

        async def replicated() -> bool:
            alive(service)
            checkpoints = await kinesis_pair.checkpoints()
            return {s: cp.sequence_number for s, cp in checkpoints.items()} == last

        await wait_until(replicated, within=30, what="every shard checkpointed at its end")
    assert [await visible(pk) for pk in "abc"] == [2, None, 1]


async def test_start_up_refuses_a_tombstone_ttl_not_longer_than_the_retention(
    kinesis_pair: KinesisPair,
) -> None:
    await kinesis_pair.kinesis.call(
        "IncreaseStreamRetentionPeriod",
        {"StreamName": kinesis_pair.table, "RetentionPeriodHours": 72},
    )
    expected = (
        f"pairs[{kinesis_pair.table}].tombstone_ttl: 259200 s (72 h) is not longer than "
        f"Kinesis stream {kinesis_pair.table}'s retention of 72 h (259200 s)"
    )
    with pytest.raises(ConfigError, match=re.escape(expected)):
        async with kinesis_pair.running() as (service, _):
            await service

    for command in ("run", "validate --check-aws"):
        checked = cli(*command.split(), "-c", str(kinesis_pair.path), timeout=60)
        assert checked.returncode == 2, (command, checked.stderr)
        [line] = [x for x in checked.stderr.splitlines() if "config error" in x]
        assert expected in line, command
    assert len(checked.stderr.strip().splitlines()) == 1  # validate says nothing else
    # Offline, validate has nothing to say against the file.
    assert cli("validate", "-c", str(kinesis_pair.path)).returncode == 0


async def test_a_missing_stream_stops_start_up_naming_it(kinesis_pair: KinesisPair) -> None:
    await kinesis_pair.kinesis.call("DeleteStream", {"StreamName": kinesis_pair.table})
    with pytest.raises(Exception, match=f"Kinesis stream '{kinesis_pair.table}' does not exist"):
        async with kinesis_pair.running() as (service, _):
            await service


async def test_replay_moves_every_checkpoint_to_a_time_and_run_reads_again_from_there(
    kinesis_pair: KinesisPair,
) -> None:
    await kinesis_pair.put(history(kinesis_pair.table, ts=1_700_000_000_000_000))
    earlier = (await kinesis_pair.arrivals())[-1]
    # A second round that arrives in a later millisecond: the replay starts there.
    while (await kinesis_pair.arrivals())[-1] <= earlier:
        await kinesis_pair.put(history(kinesis_pair.table, ts=1_700_000_000_100_000))
    arrivals = await kinesis_pair.arrivals()
    since = min(t for t in arrivals if t > earlier)
    again = sum(1 for t in arrivals if t >= since)

    async with kinesis_pair.running() as (service, metrics):

        async def all_read() -> bool:
            alive(service)
            return metrics.total("records_read") == len(arrivals)

        await wait_until(all_read, within=30, what="the stream read once")

    when = dt.datetime.fromtimestamp(since, dt.UTC).isoformat(timespec="milliseconds")
    replayed = cli(
        "replay", "-c", str(kinesis_pair.path), "--pair", kinesis_pair.table, "--since", when
    )
    assert replayed.returncode == 0, replayed.stderr
    assert "2 checkpoint(s) of 2 shard(s) moved" in replayed.stdout
    checkpoints = await kinesis_pair.checkpoints()
    assert {cp.sequence_number for cp in checkpoints.values()} == {at_time(since)}

    async with kinesis_pair.running() as (service, metrics):

        async def read_again() -> bool:
            alive(service)
            return metrics.total("records_read") >= again

        await wait_until(read_again, within=30, what="the records since the replay's time")
    assert metrics.total("records_read") == again


async def test_pairs_that_share_a_stream_share_its_per_shard_read_rate(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    # Each pair reads the whole stream; together they stay within 5 GetRecords/s per shard.
    tables = [f"{unique_name}-a", f"{unique_name}-b", f"{unique_name}-c"]
    path = write_config(tmp_path / "replicator.yaml", endpoints, tables[0])
    data = yaml.safe_load(path.read_text())
    data["pairs"] = [
        {
            "source_table": table,
            "targets": [{"region": TARGET, "table": table}],
            **({"kinesis_stream": unique_name} if table != tables[2] else {}),
        }
        for table in tables
    ]
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    await create_tables(config)
    clients = Clients.for_config(config)
    metrics = metrics_for(config)
    try:
        kinesis = await clients.json("kinesis", SOURCE)
        await kinesis.create_stream(StreamName=unique_name, ShardCount=1)
        pipelines = await build_pipelines(config, clients, metrics=metrics, stop=asyncio.Event())
        readings = [pipeline.reading for pipeline in pipelines]
        assert [r.min_interval for r in readings] == [0.4, 0.4, 0.0]
        assert [r.parents_first for r in readings] == [False, False, True]
    finally:
        metrics.shutdown()
        await clients.aclose()
