"""A Kinesis pair's pipeline reads every shard at once (DESIGN §4c "Reading"): rule K needs
no order, so a child does not wait for its parent, and the parent still ends properly."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest

from replicator.stream.source import Reading
from replicator.telemetry.metrics import Metrics
from tests.functional.test_pipeline_faults import AP, EU, SHARD, Rig, key, seq, versions

KINESIS = Reading(parents_first=False, retention_seconds=7 * 86400.0)


@pytest.mark.timeout(30)
async def test_children_are_read_while_their_parent_is_still_being_applied(
    rig: Rig, metrics: Metrics
) -> None:
    stream = rig.stream
    parent = [stream.insert(key("a"), {"version": 1})]
    stream.split(SHARD, ["child-1", "child-2"])
    children = [
        stream.insert(key("b"), {"version": 1}, shard_id="child-1"),
        stream.insert(key("c"), {"version": 1}, shard_id="child-2"),
    ]
    for target in (EU, AP):
        rig.writer(target).hold({"pk": {"S": "a"}})  # the parent's one write waits
    pipeline = rig.pipeline(metrics, targets=(EU, AP), reading=KINESIS)

    async with rig.running(pipeline):
        await rig.until(rig.checkpointed("child-1", seq(children[0])))
        await rig.until(rig.checkpointed("child-2", seq(children[1])))
        assert not rig.ended(SHARD)(), "the parent ended before its write was released"
        for target in (EU, AP):
            rig.writers[target].release()
        await rig.until(rig.ended(SHARD))
        assert rig.checkpointed(SHARD, seq(parent[0]))()

    for target in (EU, AP):
        state = rig.writers[target].state()
        assert versions(state) == {"a": (1, False), "b": (1, False), "c": (1, False)}
    assert metrics.total("trimmed") == 0


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("hours_old", "alarmed"), [(25, False), (8 * 24, True)])
async def test_a_checkpoint_is_judged_against_the_kinesis_stream_s_own_retention(
    rig: Rig,
    new_metrics: Callable[[], Metrics],
    caplog: pytest.LogCaptureFixture,
    hours_old: int,
    alarmed: bool,
) -> None:
    # A day-old checkpoint lost nothing on a stream that keeps 7 days (DynamoDB Streams'
    # 24 h would raise the alarm); one older than the 7 days may have.
    stream = rig.stream
    first = stream.insert(key("a"), {"version": 1})
    async with rig.running(rig.pipeline(new_metrics(), reading=KINESIS)):
        await rig.until(rig.checkpointed(SHARD, seq(first)))
    saved_at = time.time() - hours_old * 3600
    for item in (await rig.control_client.scan(TableName=rig.control_table))["Items"]:
        await rig.control_client.update_item(
            TableName=rig.control_table,
            Key={"pk": item["pk"], "sk": item["sk"]},
            UpdateExpression="SET updated_at = :t",
            ExpressionAttributeValues={":t": {"N": f"{saved_at:.3f}"}},
        )
    later = stream.insert(key("b"), {"version": 1})

    rig.restart_checkpoints()
    metrics = new_metrics()
    with caplog.at_level(logging.ERROR, logger="replicator"):
        async with rig.running(rig.pipeline(metrics, reading=KINESIS)):
            await rig.until(rig.checkpointed(SHARD, seq(later)))

    assert metrics.total("trimmed") == int(alarmed)
    found = [r.getMessage() for r in caplog.records if "DATA LOSS" in r.getMessage()]
    assert len(found) == int(alarmed)
