"""Lambda mode's metrics: CloudWatch embedded metric format lines, and the heartbeat tick."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from chaos.proxy import FaultProxy, Faults
from tests.esm_driver import Context
from tests.lambda_rig import US, FailingWrites, Rig, config_for, lambda_rig

pytestmark = pytest.mark.timeout(60)

SCHEDULED = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-11-30T01:00:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/replicator-heartbeat"],
    "detail": {},
}


@pytest.fixture
async def rig(endpoints: dict[str, str], unique_name: str) -> AsyncIterator[Rig]:
    async with lambda_rig(endpoints, unique_name) as rig:
        yield rig


def emf_documents(stdout: str) -> list[dict[str, Any]]:
    documents = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [d for d in documents if "_aws" in d]


async def test_the_schedule_writes_the_heartbeat_and_its_lag_is_measured_on_apply(
    rig: Rig,
) -> None:
    function = rig.function()
    response = await asyncio.to_thread(function, SCHEDULED, Context(timeout_seconds=30))
    assert response == {"heartbeats": 1}
    await rig.driver([function]).drain()

    [pair] = function.metrics.status()["pairs"]
    assert 0 <= pair["heartbeat"]["lag_seconds"] < 30
    assert await rig.differences() == []  # the canary is not user data


async def test_a_tick_the_source_does_not_answer_is_missed_before_the_function_times_out(
    rig: Rig, endpoints: dict[str, str]
) -> None:
    source = urlsplit(endpoints[US])
    assert source.hostname is not None and source.port is not None
    async with FaultProxy((source.hostname, source.port), faults=Faults(blackhole=True)) as proxy:
        function = rig.function(config=config_for({**endpoints, US: proxy.url}, rig.table))
        ticks = []
        for blackholed in (True, False, True, False):  # the first before any answer
            proxy.faults.blackhole = blackholed
            context = Context(timeout_seconds=2.5)
            response = await asyncio.to_thread(function, SCHEDULED, context)
            ticks.append((response, context.get_remaining_time_in_millis() > 0))
    missed, written = ({"heartbeats": 0}, True), ({"heartbeats": 1}, True)
    assert ticks == [missed, written, missed, written]


async def test_emf_lines_carry_the_aws_metadata_metric_definitions_and_dimensions(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    await rig.put("k1", 1)
    await rig.put("no-version", None)
    # The first write attempt fails once (retried), then everything goes through.
    function = rig.function(writer_seam=lambda _t, w: FailingWrites(w, after=0, times=1))
    await asyncio.to_thread(function, SCHEDULED, Context(timeout_seconds=30))
    started = time.time()
    await rig.driver([function]).drain()

    [document] = emf_documents(capsys.readouterr().out)  # one per invocation and pair
    metadata = document["_aws"]
    assert isinstance(metadata["Timestamp"], int)
    assert started - 1 <= metadata["Timestamp"] / 1000 <= time.time() + 1
    [directive] = metadata["CloudWatchMetrics"]
    assert directive["Namespace"] == "replicator"
    assert directive["Dimensions"] == [["source_table", "target", "service"]]
    assert {m["Name"]: m["Unit"] for m in directive["Metrics"]} == {
        "RecordsApplied": "Count",
        "RecordsDeadLettered": "Count",
        "RecordLag": "Seconds",
        "HeartbeatLag": "Seconds",
        "Retries": "Count",
    }
    assert (document["source_table"], document["target"], document["service"]) == (
        rig.table,
        f"eu-west-1/{rig.table}",
        "replicator",
    )
    assert document["RecordsApplied"] == [1.0, 1.0]  # k1 and the heartbeat
    assert document["RecordsDeadLettered"] == [1.0]
    assert document["Retries"] == [1.0]
    assert len(document["RecordLag"]) == 2 and all(0 <= lag < 30 for lag in document["RecordLag"])
    [heartbeat_lag] = document["HeartbeatLag"]
    assert 0 <= heartbeat_lag < 30
