"""Every benchmark runs end to end at a tiny size: the harness works, and says what it measured.

No timing is asserted here (goals are judged by ``make bench`` on a quiet machine);
each result must name its figure and goal, and the figures that carry a goal must be
present and measured.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

from bench import ui
from bench.__main__ import main
from bench.activeactive import active_active_cost
from bench.adaptive import default_drain, throttled_drain
from bench.drain import drain_rate
from bench.env import backend
from bench.hotpath import profile_drain, profile_overhead
from bench.kinesis import kinesis_vs_streams
from bench.lag import lag_under_load, quantile
from bench.memory import memory
from bench.overhead import pipeline_overhead
from bench.results import Result, table
from bench.sdk import sdk_cost
from bench.startup import start_up
from bench.tools import backfill_rate, verify_memory

RTT = 0.02
KEYS = {"benchmark", "figure", "measured", "unit", "goal", "passed", "note", "details"}


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    ui.set_quiet(True)
    yield
    ui.set_quiet(False)


def check(results: list[Result], *, with_goal: int) -> None:
    """Well-formed results; ``with_goal`` of them carry a goal and were measured."""
    assert results
    for result in results:
        document = result.as_json()
        assert set(document) >= KEYS, document
        assert result.figure and result.benchmark
        if result.goal is not None:
            assert {"op", "value", "unit", "text"} <= set(document["goal"])
            # judged, or not judged with the reason the backend rules it out
            assert isinstance(document["passed"], bool) or document["unreachable"]
    goals = [r for r in results if r.goal is not None]
    assert len(goals) == with_goal
    assert all(r.measured is not None for r in goals), [r.note for r in goals]
    table(results)  # renders


@pytest.mark.timeout(60)
async def test_pipeline_overhead() -> None:
    results = await pipeline_overhead(300, rounds=1)
    check(results, with_goal=1)
    assert results[0].details["rounds"][0]["finished"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("target", ["moto", "stub"])
async def test_drain_ceiling_and_naive_handler(
    endpoints: dict[str, str], target: Literal["moto", "stub"]
) -> None:
    with backend(RTT, endpoints=endpoints, target=target) as started:
        report = await drain_rate(started, 60, ceiling_writes=30, naive_records=5)
    check(report.results, with_goal=3)
    assert report.ceiling_per_second > 0
    drained = report.results[0].details
    assert drained["totals"]["applied"] == 60, drained


@pytest.mark.timeout(120)
async def test_lag_under_load(endpoints: dict[str, str]) -> None:
    with backend(RTT, endpoints=endpoints) as started:
        results = await lag_under_load(started, 3.0, ceiling=20.0, heartbeat_interval=0.1)
    check(results, with_goal=2)
    assert results[0].details["load"]["writes"] > 0
    assert results[2].details["probes"] > 0  # the target's own round trip, for context


def test_quantile_is_nearest_rank() -> None:
    assert quantile([], 0.5) is None
    assert quantile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert quantile([float(n) for n in range(1, 101)], 0.99) == 99.0


@pytest.mark.timeout(120)
async def test_memory() -> None:
    results = await memory(300, 600)
    check(results, with_goal=1)
    large = results[0].details["large"]
    assert large["finished"]
    assert large["records"] == 600


@pytest.mark.timeout(120)
async def test_operator_tools(endpoints: dict[str, str]) -> None:
    results = await verify_memory(300, 900)
    assert results[0].details["large"]["compared"] == 900
    with backend(RTT, endpoints=endpoints, target="stub") as started:
        results += await backfill_rate(started, 60, ceiling_writes=30)
    check(results, with_goal=2)
    assert results[1].details["outcomes"] == {"applied": 60}


@pytest.mark.timeout(60)
async def test_sdk_cost() -> None:
    check(await sdk_cost(30, concurrency=4), with_goal=2)


@pytest.mark.timeout(60)
async def test_active_active_write_cost() -> None:
    results = await active_active_cost(30, concurrency=4)
    check(results, with_goal=0)
    assert [r.figure for r in results] == [
        "one-way ConditionalWriter.put",
        "active-active, ALL_OLD on success",
    ]
    assert all(r.measured for r in results)


@pytest.mark.timeout(120)
async def test_hot_path(endpoints: dict[str, str], tmp_path: Path) -> None:
    results = await profile_overhead(300, directory=tmp_path)
    with backend(RTT, endpoints=endpoints, target="stub") as started:
        results += await profile_drain(started, 60, directory=tmp_path)
    check(results, with_goal=0)
    assert (tmp_path / "overhead.txt").exists()
    assert (tmp_path / "drain.txt").exists()
    assert any("overhead:" in r.figure for r in results)
    assert any("drain:" in r.figure for r in results)


@pytest.mark.timeout(120)
async def test_default_drain_to_a_round_trip_stub() -> None:
    results = await default_drain(400, rtt=RTT)
    check(results, with_goal=2)
    assert results[0].details["peak"] > 0  # the adaptive limit was read while draining


@pytest.mark.timeout(120)
async def test_throttled_target() -> None:
    results = await throttled_drain(300, rtt=RTT)
    check(results, with_goal=2)
    assert results[0].details["timeline"]


@pytest.mark.timeout(120)
async def test_start_up() -> None:
    check(await start_up(1, rtt=RTT), with_goal=1)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("target", ["moto", "stub"])
async def test_kinesis_vs_streams(
    endpoints: dict[str, str], target: Literal["moto", "stub"]
) -> None:
    with backend(RTT, endpoints=endpoints, target=target) as started:
        results = await kinesis_vs_streams(started, 200)
    check(results, with_goal=2)
    details = results[0].details
    # The Kinesis backlog is the one described: every change, duplicates, ties, shards.
    assert details["kinesis_records"] == 200 + details["duplicates"]
    assert details["duplicates"] > 0 and details["ties"] > 0
    for kinesis in ("kinesis", "kinesis-1"):  # its shards, then one shard of the same
        assert details[kinesis]["totals"]["records_read"] == details["kinesis_records"]
    assert details["streams"]["totals"]["records_read"] == 200
    if target == "moto":  # ties meet only where the target refuses writes
        assert min(details["tie_reads"].values()) >= details["final_ties"] > 0
        assert details["diverged_keys"] == {"streams": 0, "kinesis": 0, "kinesis-1": 0}


@pytest.mark.timeout(60)
def test_make_bench_writes_every_figure_with_its_goal(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    assert main(["--quick", "--only", "1", "--output", str(output)]) == 0
    document = json.loads(output.read_text())
    assert document["results"]
    for row in document["results"]:
        assert set(row) >= KEYS
    assert any(row["goal"] for row in document["results"])
