"""The chaos suite's verdict: the expectation from the history alone, and how a region's
difference from it is named (lost, resurrected), and the report a failure produces."""

from __future__ import annotations

from decimal import Decimal

from chaos.outcome import Result, Timeline, compare, expected_state
from chaos.report import chart
from replicator.demo.activeload import Write

EU = "eu-west-1"


def data(key: str, version: int) -> dict[str, object]:
    return {"pk": key, "version": Decimal(version)}


def test_the_expectation_is_the_last_writer_of_each_key() -> None:
    writes = [
        Write("a", 2, False, "us-east-1", data("a", 2)),
        Write("a", 1, False, "eu-west-1", data("a", 1)),  # logged later, older version
        Write("b", 3, False, "us-east-1", data("b", 3)),
        Write("b", 3, True, "eu-west-1", None),  # a delete wins a tie
    ]
    assert expected_state(writes) == {"a": data("a", 2), "b": None}


def test_a_missing_or_older_winner_is_lost_and_a_deleted_one_shown_is_resurrected() -> None:
    expected = {"a": data("a", 2), "b": data("b", 5), "c": None, "d": data("d", 1)}
    actual = {"a": data("a", 2), "b": data("b", 4), "c": data("c", 3)}
    diff = compare(expected, actual, region=EU)
    assert (diff.differences, diff.lost, diff.resurrected) == (3, 2, 1)
    assert any("eu-west-1 c" in example for example in diff.examples)


def test_a_passing_result_needs_writes_faults_a_live_replicator_and_the_poison_in_the_dlq() -> None:
    def result(**fields: object) -> Result:
        return Result("s", "process", **{"writes": 10, "faults": {"reset": 1}, **fields})  # type: ignore[arg-type]

    assert result().passed
    assert not result(writes=0).passed  # nothing written proves nothing
    assert result(faults={}).failures == ["no fault was injected: the scenario proves nothing"]
    assert result(alive=False).failures == ["a replicator died"]
    assert result(poison=3, poison_in_dlq=2).failures == ["1 poison records not in the DLQ"]
    alarm = result(required={"the trimmed alarm was raised": False})
    assert alarm.failures == ["the trimmed alarm was raised did not hold"]


def test_recovery_is_measured_from_the_heal_and_the_chart_marks_it() -> None:
    timeline = Timeline()
    timeline.samples = [(0.0, 9.0), (1.0, 2.5), (2.0, 0.1)]
    timeline.measured_from = 0.5  # the start-up's lag is not counted
    timeline.mark("fault: blackhole")
    assert timeline.recovery is None
    timeline.heal()
    timeline.recovered_at = timeline.healed_at + 1.5  # type: ignore[operator]
    assert timeline.recovery == 1.5
    assert timeline.max_lag == 2.5
    svg = chart(Result("blackhole", "process", writes=1, timeline=timeline))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "fault: blackhole" in svg and "heal at" in svg
    assert svg.count("<line") == 2 and "<polyline" in svg
