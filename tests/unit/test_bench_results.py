"""Benchmark verdicts: a goal is judged, or reported as unreachable with the reason."""

from __future__ import annotations

from rich.console import Console

from bench.drain import NAIVE_GOAL, _unreachable, read_unreachable
from bench.results import Goal, Result, table

GOAL = Goal(">=", 25, "x naive")


def rendered(result: Result) -> str:
    console = Console(width=300, record=True)
    console.print(table([result]))
    return console.export_text()


def test_a_measured_figure_is_judged_against_its_goal() -> None:
    assert Result("3", "drain / naive", 28.5, "x", GOAL).passed is True
    assert Result("3", "drain / naive", 5.1, "x", GOAL).passed is False
    assert "FAIL" in rendered(Result("3", "drain / naive", 5.1, "x", GOAL))


def test_a_goal_the_backend_rules_out_is_reported_not_judged() -> None:
    result = Result("3", "drain / naive", 5.1, "x", GOAL, unreachable="the target caps it")
    assert result.passed is None
    assert result.as_json()["unreachable"] == "the target caps it"
    text = rendered(result)
    assert "unreachable" in text and "the target caps it" in text and "FAIL" not in text


def test_goal_2_is_unreachable_only_when_the_target_itself_bounds_the_drain() -> None:
    # moto as the target: 117 writes/s from 32 writers at 80 ms RTT (400/s by RTT alone).
    assert "0.16x moto's GetRecords" in read_unreachable(117.0, 119.0, 749.0, rtt=0.08)
    # A stub target: the raw writers were held back by the round trip only, and the
    # pipeline wrote past them; a shortfall there is the pipeline's.
    assert read_unreachable(337.0, 1362.0, 1762.0, rtt=0.08) == ""
    # A slow target that still outruns the source.
    assert read_unreachable(190.0, 190.0, 200.0, rtt=0.08) == ""
    # moto's target after its writes were made atomic: 232 of the 400 writes/s 32 writers
    # allow at 80 ms, and the pipeline got 240: the target still bounds it.
    assert "0.13x moto's GetRecords" in read_unreachable(232.0, 240.0, 1815.0, rtt=0.08)
    # Raw writers held back, but the pipeline went far past them: not the target's limit.
    assert read_unreachable(232.0, 1200.0, 1815.0, rtt=0.08) == ""


def test_goal_3_is_unreachable_only_when_the_targets_own_ceiling_is_below_it() -> None:
    assert _unreachable(NAIVE_GOAL.value) == ""
    assert _unreachable(40.0) == ""
    assert "6.0x the naive handler" in _unreachable(6.0)
