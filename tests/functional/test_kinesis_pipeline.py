"""A Kinesis pair's pipeline on moto (DESIGN §4c): records in any order, more than once,
with ties, converge the target to the source.

The pair is wired as ``replicator run`` wires it (``wiring.target_writer`` and
``applier_for`` from the pair's config, the real checkpoint store and DLQ); only the
stream is scripted (``tests.kinesis_feed``), since moto has no Kinesis streaming
destination for DynamoDB.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from replicator.apply.rule import visible
from replicator.aws.factory import Clients
from replicator.aws.tables import CONTROL_KEY, ensure_table
from replicator.config.schema import Config, parse_config
from replicator.models import Meta, Mode, WireItem
from replicator.pipeline.dlq import DeadLetterQueue
from replicator.pipeline.pair import PairPipeline
from replicator.service.startup import targets_of
from replicator.service.wiring import applier_for, meta_for, target_writer
from replicator.telemetry.metrics import Metrics
from replicator.tools.dlq import list_entries
from tests.e2e.helpers import SOURCE, TARGET, create_tables, write_config
from tests.fakes import RecordingCheckpoints
from tests.kinesis_feed import NOW_US, SHARD, KinesisPages, document, kinesis_record

pytestmark = pytest.mark.timeout(60)
META = Meta(version="version")


@dataclass
class KinesisPair:
    config: Config
    clients: Clients

    @property
    def table(self) -> str:
        return self.config.pairs[0].source_table

    async def source_holds(self, key: str, value: dict[str, Any] | None) -> None:
        client = await self.clients.json("dynamodb", SOURCE)
        keys = {"pk": {"S": key}}
        if value is None:
            await client.delete_item(TableName=self.table, Key=keys)
        else:
            item = {**keys, **{k: _wire(v) for k, v in value.items()}}
            await client.put_item(TableName=self.table, Item=item)

    async def stored(self, region: str, key: str) -> WireItem | None:
        client = await self.clients.json("dynamodb", region)
        answer = await client.get_item(
            TableName=self.table, Key={"pk": {"S": key}}, ConsistentRead=True
        )
        item: WireItem | None = answer.get("Item")
        return item

    async def seen(self, region: str, key: str) -> dict[str, Any] | None:
        """What a reader there sees (None: nothing, or a tombstone)."""
        return visible(await self.stored(region, key), META)

    async def replicate(self, pages: Sequence[list[dict[str, Any]]], metrics: Metrics) -> None:
        """Run the pair's pipeline over ``pages`` until every lane read their shard to its end."""
        config, pair = self.config, self.config.pairs[0]
        stop = asyncio.Event()
        home = await self.clients.json("dynamodb", SOURCE)
        for table in (config.control_table, config.dlq_table):
            await ensure_table(home, table, CONTROL_KEY)
        dlq = DeadLetterQueue(home, config.dlq_table)
        targets, local = targets_of(config, pair)
        appliers = [
            applier_for(
                config,
                pair,
                target,
                writer=await target_writer(
                    config, pair, target, self.clients, metrics, local=local
                ),
                dlq=dlq,
                metrics=metrics,
                stop=stop,
            )
            for target in targets
        ]
        checkpoints = RecordingCheckpoints(home, config.control_table)
        pipeline = PairPipeline(
            source_table=pair.source_table,
            region=SOURCE,
            meta=meta_for(config, pair),
            source=KinesisPages(pages),
            appliers=appliers,
            checkpoints=checkpoints,
            metrics=metrics,
            stop=stop,
            local_target=local,
        )

        def read_to_the_end() -> bool:
            ends = [checkpoints.latest(SHARD, target) for target in targets]
            return all(end is not None and end.shard_ended for end in ends)

        running = asyncio.create_task(pipeline.run())
        try:
            await checkpoints.signal.until(read_to_the_end, within=30, watch=running)
        finally:
            stop.set()
            await running


def _wire(value: Any) -> dict[str, Any]:
    return {"N": str(value)} if isinstance(value, int) else {"S": str(value)}


# The fixture's parameter: the mode, and the pair's settings besides its Kinesis stream.
ONE_WAY: tuple[Mode, dict[str, Any]] = (Mode.ONE_WAY, {})


@pytest.fixture(params=[ONE_WAY])
async def kinesis_pair(
    request: pytest.FixtureRequest, endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> AsyncIterator[KinesisPair]:
    mode, settings = request.param
    path = write_config(
        tmp_path / "replicator.yaml", endpoints, unique_name, kinesis_stream="changes", **settings
    )
    data = yaml.safe_load(path.read_text())
    config = parse_config({**data, "mode": mode.value})
    await create_tables(config)
    clients = Clients(config.endpoints)
    try:
        yield KinesisPair(config, clients)
    finally:
        await clients.aclose()


def tie_reads(metrics: Metrics, table: str) -> float:
    """``replicator_kinesis_tie_reads_total`` of ``table`` as ``/metrics`` exports it."""
    for family in text_string_to_metric_families(metrics.prometheus_text().decode()):
        for sample in family.samples:
            name, labels = sample.name, sample.labels
            if name == "replicator_kinesis_tie_reads_total" and labels["source_table"] == table:
                return sample.value
    return 0


def write(
    table: str,
    key: str,
    version: int,
    tick: int,
    *,
    event_id: str | None = None,
    create: bool = False,
) -> dict[str, Any]:
    return document(
        "INSERT" if create else "MODIFY",
        {"pk": key},
        table=table,
        ts=NOW_US + tick,
        new={"version": version, "note": f"{key} v{version}"},
        old=None if create else {"version": version - 1},
        event_id=event_id,
    )


def delete(table: str, key: str, version: int, tick: int) -> dict[str, Any]:
    return document("REMOVE", {"pk": key}, table=table, ts=NOW_US + tick, old={"version": version})


async def test_scrambled_duplicated_records_with_a_tie_converge_to_the_source(
    kinesis_pair: KinesisPair,
) -> None:
    t = kinesis_pair.table
    # The source's histories (ts = tick µs): "kept" v1..v3; "gone" created, updated,
    # deleted; "again" deleted and re-created with its version reset; "tied" written
    # twice within one tick.
    kept = [write(t, "kept", 1, 1, create=True), write(t, "kept", 2, 2), write(t, "kept", 3, 3)]
    gone = [write(t, "gone", 1, 1, create=True), write(t, "gone", 2, 2), delete(t, "gone", 2, 4)]
    again = [
        write(t, "again", 5, 1, create=True),
        delete(t, "again", 5, 2),
        write(t, "again", 1, 3, create=True),
    ]
    tied = [write(t, "tied", 2, 5, event_id="tie-a"), write(t, "tied", 3, 5, event_id="tie-b")]
    other_table = document(
        "INSERT", {"pk": "kept"}, table="invoices", ts=NOW_US + 9, new={"version": 9}
    )
    await kinesis_pair.source_holds("kept", {"version": 3, "note": "kept v3"})
    await kinesis_pair.source_holds("again", {"version": 1, "note": "again v1"})
    await kinesis_pair.source_holds("tied", {"version": 3, "note": "tied v3"})

    # Kinesis order is not write order: newest first, older ones after it in the same
    # batch (the last in a batch is not the newest), duplicates, across pages.
    delivered: list[dict[str, Any] | bytes] = [
        kept[2], gone[2], again[2], kept[0], b"{not json",
        tied[1], gone[1], again[1], tied[0], kept[1],
        gone[0], again[0], other_table, gone[2], tied[1],
    ]  # fmt: skip
    records = [kinesis_record(change, n) for n, change in enumerate(delivered, start=1)]
    metrics = Metrics()

    await kinesis_pair.replicate([records[:5], records[5:10], records[10:]], metrics)

    for key in ("kept", "gone", "again", "tied"):
        assert await kinesis_pair.seen(TARGET, key) == await kinesis_pair.seen(SOURCE, key), key
    assert await kinesis_pair.seen(TARGET, "tied") == {
        "pk": "tied",
        "version": 3,
        "note": "tied v3",
    }
    (entry,) = await list_entries(kinesis_pair.config)
    assert "not JSON" in entry.reason and entry.sequence_number == "5"
    assert metrics.counts["records_skipped"][(("source_table", t), ("reason", "other-table"))] == 1
    assert tie_reads(metrics, t) >= 1


async def test_a_tie_converges_to_the_source_in_either_order_with_one_read_per_meeting(
    kinesis_pair: KinesisPair,
) -> None:
    t = kinesis_pair.table
    # Two writes of one key in one tick: ts cannot order them, the source can. Whichever
    # arrives second, neither "the first stays" nor "the last wins" is right for both keys.
    older_first = [
        write(t, "older-first", 2, 7, event_id="a1"),
        write(t, "older-first", 3, 7, event_id="a2"),
    ]
    newer_first = [
        write(t, "newer-first", 3, 7, event_id="b2"),
        write(t, "newer-first", 2, 7, event_id="b1"),
    ]
    await kinesis_pair.source_holds("older-first", {"version": 3, "note": "older-first v3"})
    await kinesis_pair.source_holds("newer-first", {"version": 3, "note": "newer-first v3"})
    records = [kinesis_record(c, n) for n, c in enumerate([*older_first, *newer_first], start=1)]
    metrics = Metrics()

    # One tie meets within a batch, the other across two batches.
    await kinesis_pair.replicate([records[:3], records[3:]], metrics)

    for key in ("older-first", "newer-first"):
        assert await kinesis_pair.seen(TARGET, key) == {
            "pk": key,
            "version": 3,
            "note": f"{key} v3",
        }
    assert tie_reads(metrics, t) == 2


@pytest.mark.parametrize("kinesis_pair", [(Mode.ACTIVE_ACTIVE, {})], indirect=True)
async def test_active_active_deletes_leave_tombstones_here_and_there_in_any_order(
    kinesis_pair: KinesisPair,
) -> None:
    t = kinesis_pair.table
    # Created then deleted here; the delete arrives first, the create after it (and a
    # redelivery of the delete): no resurrection anywhere, and no _rep_seq fence to trip.
    created = write(t, "deleted", 1, 1, create=True)
    deleted = delete(t, "deleted", 1, 2)
    updated = [write(t, "kept", 1, 1, create=True), write(t, "kept", 2, 3)]
    await kinesis_pair.source_holds("kept", {"version": 2, "note": "kept v2"})
    records = [
        kinesis_record(c, n)
        for n, c in enumerate([deleted, updated[1], created, updated[0], deleted], start=1)
    ]

    await kinesis_pair.replicate([records[:2], records[2:]], Metrics())

    assert await kinesis_pair.seen(TARGET, "kept") == {
        "pk": "kept",
        "version": 2,
        "note": "kept v2",
    }
    for region in (TARGET, SOURCE):
        assert await kinesis_pair.seen(region, "deleted") is None
        stored = await kinesis_pair.stored(region, "deleted")
        # A tombstone of this region's delete, in its own table too (DESIGN §4 rule 6).
        assert stored is not None and stored["_rep_origin"] == {"S": SOURCE}
        assert "_rep_deleted" in stored and "_rep_ts" in stored and "_rep_seq" not in stored
        assert "_rep_kv" not in stored  # a Kinesis pair has no conflict feed


EU_ONLY = {"filter": {"attribute": "region", "in": ["eu"]}}


@pytest.mark.parametrize("kinesis_pair", [(Mode.ONE_WAY, EU_ONLY)], indirect=True)
async def test_a_tie_settled_by_a_source_state_out_of_the_filter_deletes_on_the_target(
    kinesis_pair: KinesisPair,
) -> None:
    t = kinesis_pair.table
    # Both records of the tick match the filter; the write that came last in the source
    # (the state it holds now) moved the item out of it: the target must not keep it.
    tied = [
        document("MODIFY", {"pk": "moved"}, table=t, ts=NOW_US + 7, event_id=event,
                 new={"version": version, "region": "eu"}, old={"version": version - 1})
        for version, event in ((2, "m2"), (3, "m3"))
    ]  # fmt: skip
    await kinesis_pair.source_holds("moved", {"version": 4, "region": "us"})
    records = [kinesis_record(c, n) for n, c in enumerate(tied, start=1)]
    metrics = Metrics()

    await kinesis_pair.replicate([records], metrics)

    assert await kinesis_pair.seen(TARGET, "moved") is None
    assert tie_reads(metrics, t) == 1
