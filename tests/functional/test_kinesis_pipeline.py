"""A Kinesis pair's pipeline reads every shard at once (DESIGN §4c "Reading"): rule K needs
no order, so a child does not wait for its parent, and the parent still ends properly."""

from __future__ import annotations

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
