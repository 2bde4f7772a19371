"""Loss is loud (DESIGN §5): what checkpoints reveal at start-up raises the trimmed-data alarm.

Same rig as ``test_pipeline_faults``: ``FakeStream`` shards, in-memory targets and the
real checkpoint store on moto; a restart is a new pipeline over the same control table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest

from replicator.errors import AwsError
from replicator.models import Outcome
from replicator.telemetry.metrics import Metrics
from tests.functional.test_pipeline_faults import EU, SHARD, Rig, ScriptedStream, key, seq

pytestmark = pytest.mark.timeout(30)


def alarms(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "DATA LOSS" in r.getMessage()]


async def alarms_of_another_start(
    rig: Rig, metrics: Metrics, caplog: pytest.LogCaptureFixture, shard_id: str
) -> list[str]:
    """Restart once more and replicate one record past start-up; the alarms it raised."""
    record = rig.stream.insert(key("another-start"), {"version": 1}, shard_id=shard_id)
    rig.restart_checkpoints()
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="replicator"):
        async with rig.running(rig.pipeline(metrics)):
            await rig.until(rig.checkpointed(shard_id, seq(record)))
    assert metrics.total("trimmed") == 0
    return alarms(caplog)


async def test_a_checkpointed_shard_the_stream_no_longer_lists_raises_the_alarm(
    rig: Rig, new_metrics: Callable[[], Metrics], caplog: pytest.LogCaptureFixture
) -> None:
    stream = rig.stream
    first = [stream.insert(key(f"k{i}"), {"version": 1}) for i in range(3)]
    async with rig.running(rig.pipeline(new_metrics())):
        await rig.until(rig.checkpointed(SHARD, seq(first[-1])))
    # Stopped for over a day: the shard rolled over and aged out with an unread record.
    stream.insert(key("unread"), {"version": 1})
    stream.open_shard("shard-0001", parent_id=SHARD)
    stream.drop_shard(SHARD)
    later = stream.insert(key("later"), {"version": 1}, shard_id="shard-0001")

    rig.restart_checkpoints()
    metrics = new_metrics()
    with caplog.at_level(logging.ERROR, logger="replicator"):
        async with rig.running(rig.pipeline(metrics)):
            await rig.until(rig.checkpointed("shard-0001", seq(later)))

    assert metrics.total("trimmed") == 1
    [alarm] = alarms(caplog)
    assert SHARD in alarm and seq(first[-1]) in alarm and "no longer lists" in alarm
    assert "verify --repair" in alarm
    assert {k[0][2] for k in rig.writers[EU].state()} == {"k0", "k1", "k2", "later"}
    # Raised once: the gone shard's checkpoint was deleted, so no later start repeats it.
    assert await alarms_of_another_start(rig, new_metrics(), caplog, "shard-0001") == []


async def test_a_role_without_delete_rights_still_replicates_and_says_why_the_alarm_repeats(
    rig: Rig, new_metrics: Callable[[], Metrics], caplog: pytest.LogCaptureFixture
) -> None:
    stream = rig.stream
    first = stream.insert(key("k0"), {"version": 1})
    async with rig.running(rig.pipeline(new_metrics())):
        await rig.until(rig.checkpointed(SHARD, seq(first)))
    stream.open_shard("shard-0001", parent_id=SHARD)
    stream.drop_shard(SHARD)
    later = stream.insert(key("later"), {"version": 1}, shard_id="shard-0001")

    rig.restart_checkpoints()
    refused = AwsError("AccessDeniedException: not authorized", code="AccessDeniedException")

    async def forget(*_: object) -> None:  # an IAM role from before DeleteItem was granted
        raise refused

    rig.checkpoints.forget = forget  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="replicator"):
        async with rig.running(rig.pipeline(new_metrics())):
            await rig.until(rig.checkpointed("shard-0001", seq(later)))

    [warning] = [r.getMessage() for r in caplog.records if "not deleted" in r.getMessage()]
    assert "AccessDeniedException" in warning and "dynamodb:DeleteItem" in warning


async def test_a_shard_gone_between_listing_and_reading_alarms_and_its_children_are_read(
    rig: Rig, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    stream = rig.stream
    stream.insert(key("lost"), {"version": 1})
    stream.split(SHARD, ["shard-0001"])
    later = stream.insert(key("later"), {"version": 1}, shard_id="shard-0001")
    stream.before_get_records = lambda call: stream.vanish(SHARD) if call == 1 else None
    with caplog.at_level(logging.ERROR, logger="replicator"):
        async with rig.running(rig.pipeline(metrics)):
            await rig.until(rig.checkpointed("shard-0001", seq(later)))

    assert metrics.total("trimmed") == 1
    assert any(
        SHARD in r.getMessage() and "no longer exists" in r.getMessage() for r in caplog.records
    )
    assert {k[0][2] for k in rig.writers[EU].state()} == {"later"}


async def test_a_checkpoint_older_than_the_stream_retention_raises_the_alarm(
    rig: Rig, new_metrics: Callable[[], Metrics], caplog: pytest.LogCaptureFixture
) -> None:
    stream = rig.stream
    first = stream.insert(key("a"), {"version": 1})
    async with rig.running(rig.pipeline(new_metrics())):
        await rig.until(rig.checkpointed(SHARD, seq(first)))
    day_and_more = time.time() - 25 * 3600
    for item in (await rig.control_client.scan(TableName=rig.control_table))["Items"]:
        await rig.control_client.update_item(
            TableName=rig.control_table,
            Key={"pk": item["pk"], "sk": item["sk"]},
            UpdateExpression="SET updated_at = :t",
            ExpressionAttributeValues={":t": {"N": f"{day_and_more:.3f}"}},
        )
    later = stream.insert(key("b"), {"version": 1})

    rig.restart_checkpoints()
    metrics = new_metrics()
    with caplog.at_level(logging.ERROR, logger="replicator"):
        async with rig.running(rig.pipeline(metrics)):
            await rig.until(rig.checkpointed(SHARD, seq(later)))

    assert metrics.total("trimmed") == 1
    [alarm] = alarms(caplog)
    assert SHARD in alarm and seq(first) in alarm and "25.0 h old" in alarm


async def test_a_stream_re_enabled_under_a_new_arn_alarms_and_its_old_checkpoints_never_apply(
    rig: Rig, new_metrics: Callable[[], Metrics], caplog: pytest.LogCaptureFixture
) -> None:
    old = rig.stream
    written = [old.insert(key(f"old{i}"), {"version": 1}) for i in range(3)]
    async with rig.running(rig.pipeline(new_metrics())):
        await rig.until(rig.checkpointed(SHARD, seq(written[-1])))

    # Disabled and enabled again: a new ARN, the same shard id, sequence numbers from the
    # start again (below the old checkpoint).
    new = ScriptedStream(old.table, rig.journal)
    new.arn = old.arn.replace("/stream/fake", "/stream/re-enabled")
    fresh = [new.insert(key(f"new{i}"), {"version": 1}) for i in range(3)]
    assert int(seq(fresh[0])) <= int(seq(written[-1]))
    rig.stream = new
    rig.restart_checkpoints()
    metrics = new_metrics()
    with caplog.at_level(logging.ERROR, logger="replicator"):
        async with rig.running(rig.pipeline(metrics)):
            await rig.until(
                lambda: {k[0][2] for k in rig.writers[EU].state()} >= {"new0", "new1", "new2"}
            )

    assert metrics.total("trimmed") == 1
    [alarm] = alarms(caplog)
    assert "new ARN" in alarm and old.arn in alarm and new.arn in alarm
    assert await alarms_of_another_start(rig, new_metrics(), caplog, SHARD) == []


async def test_the_dlq_entry_of_a_coalesced_run_keeps_its_recreate_flag(
    rig: Rig, new_metrics: Callable[[], Metrics]
) -> None:
    stream = rig.stream
    writer = rig.writer(EU)
    too_big = AwsError("Item size has exceeded", code="ValidationException", record_fault=True)
    writer.fail_key({"pk": {"S": "k"}}, too_big)
    # A re-create then an update of the same key in one batch coalesce into one write
    # that carries the re-create flag (DESIGN §4 rule 5).
    records = [
        stream.insert(key("k"), {"version": 1}),
        stream.modify(key("k"), {"version": 1}, {"version": 2}),
    ]
    metrics = new_metrics()
    async with rig.running(rig.pipeline(metrics)):
        await rig.until(rig.checkpointed(SHARD, seq(records[-1])))

    [entry] = rig.dlq.entries
    assert entry.sequence_number == seq(records[-1])
    assert entry.recreate, "the re-create flag of the coalesced run was dropped"
    assert metrics.total(Outcome.DEAD_LETTERED.value) == 1
