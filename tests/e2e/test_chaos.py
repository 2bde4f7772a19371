"""``replicator chaos``: the quick suite passes in CI, and the suite can fail.

The suite's teeth are shown by breaking the pipeline through the seams its in-process
scenarios are built from (``chaos.scenario.Seams``), as the functional tests do: a
target client that sends no condition expression, and a retry policy that never
retries. The product has no switch for either.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from chaos.catalog import SCENARIOS
from chaos.scenario import Seams
from chaos.suite import run_suite
from replicator.aws.classify import classify
from replicator.aws.retry import RetryPolicy
from replicator.errors import AwsError
from replicator.telemetry.metrics import Metrics

T = TypeVar("T")
CLI = [sys.executable, "-m", "replicator", "chaos"]
CONDITION_FIELDS = (
    "ConditionExpression",
    "ExpressionAttributeNames",
    "ExpressionAttributeValues",
    "ReturnValuesOnConditionCheckFailure",
)


class UnconditionalPuts:
    """A target client that drops the last-writer-wins condition: the last write wins."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def put_item(self, **request: Any) -> dict[str, Any]:
        for field in CONDITION_FIELDS:
            request.pop(field, None)
        answer: dict[str, Any] = await self._inner.put_item(**request)
        return answer


class NoRetries(RetryPolicy):
    """A retry policy that gives up at the first failure of any call."""

    async def call(
        self,
        call: str,
        region: str,
        attempt: Callable[[], Awaitable[T]],
        *,
        before: Callable[[], Awaitable[None]] | None = None,
    ) -> T:
        if before is not None:
            await before()
        try:
            return await attempt()
        except Exception as exc:
            error = classify(exc)
            if error.record_fault or not error.retryable:
                raise error from exc
            raise AwsError(
                f"{call} in {region}: retries disabled: {error}", code=error.code
            ) from exc


def no_retries(stop: asyncio.Event, metrics: Metrics) -> RetryPolicy:
    return NoRetries(stop=stop, observer=metrics)


def test_list_names_at_least_fourteen_scenarios() -> None:
    listed = subprocess.run(
        [*CLI, "--list"], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    assert len(listed) >= 14
    assert len(set(listed)) == len(listed)
    for needed in (
        "target-blackhole",
        "kill-9-restart",
        "sigstop-sigcont",
        "poison-items",
        "kinesis-reorder",
        "kinesis-duplicates",
        "kinesis-ties",
        "kinesis-millisecond",
        "kinesis-replay-since",
        "kinesis-kill-9",
    ):
        assert needed in listed


def test_an_unknown_scenario_is_refused_with_the_way_to_list_them() -> None:
    answer = subprocess.run(
        [*CLI, "--scenario", "no-such"], capture_output=True, text=True, timeout=60, check=False
    )
    assert answer.returncode == 2
    assert "replicator chaos --list" in answer.stderr


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_quick_suite_passes_every_dynamodb_streams_scenario(tmp_path: Path) -> None:
    # The Kinesis ones run in the test below (two of them) and in `make chaos` (all): each
    # starts its own bridge and processes, and the suite's time is kept under ten minutes.
    streams = ",".join(name for name in SCENARIOS if not name.startswith("kinesis-"))
    answer = subprocess.run(
        [*CLI, "--scenario", streams, "--quick", "--seed", "7", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=880,
        check=False,
        env=os.environ.copy(),
    )
    report = json.loads((tmp_path / "chaos-report.json").read_text())
    failed = {s["name"]: s["failures"] for s in report["scenarios"] if s["verdict"] != "pass"}
    assert answer.returncode == 0, f"{failed}\n{answer.stdout[-3000:]}"
    assert len(report["scenarios"]) >= 14
    for scenario in report["scenarios"]:
        assert scenario["differences"] == scenario["lost"] == scenario["resurrected"] == 0
        assert scenario["writes"] > 0
        assert sum(scenario["faults_injected"].values()) > 0, scenario["name"]
    assert "verdict" in answer.stdout and "three-region-writers" in answer.stdout
    page = (tmp_path / "chaos-report.html").read_text()
    assert page.count("<svg") == len(report["scenarios"])
    assert "heal" in page
    assert "<script src" not in page and "https://" not in page, "the page loads nothing"


KINESIS_SCENARIOS = "kinesis-ties,kinesis-replay-since"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_kinesis_scenarios_converge_through_ties_and_a_replay(
    endpoints: dict[str, str], tmp_path: Path
) -> None:
    report = run_suite(KINESIS_SCENARIOS, quick=True, seed=5, out=tmp_path, endpoints=endpoints)
    failed = {result.name: result.failures for result in report.results if not result.passed}
    assert report.passed, failed
    assert [result.name for result in report.results] == KINESIS_SCENARIOS.split(",")
    for result in report.results:
        assert result.writes > 0 and result.diff.differences == 0
    faults = {result.name: result.faults for result in report.results}
    assert faults["kinesis-ties"]["timestamp ties"] > 0, faults
    assert faults["kinesis-replay-since"]["replay"] == 1, faults
    replayed = report.results[1].required
    assert len(replayed) == 2 and all(replayed.values()), replayed  # re-read, drained


TEETH_SCENARIOS = "stream-origins-reorder,stream-throttled"


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("seams", "broken", "dies"),
    [
        (Seams(put_client=UnconditionalPuts), "stream-origins-reorder", False),
        (Seams(retry=no_retries), "stream-throttled", True),
    ],
    ids=["unconditional-writer", "retries-disabled"],
)
def test_the_suite_fails_when_the_pipeline_is_broken(
    endpoints: dict[str, str], tmp_path: Path, seams: Seams, broken: str, dies: bool
) -> None:
    report = run_suite(
        TEETH_SCENARIOS, quick=True, seed=3, out=tmp_path, endpoints=endpoints, seams=seams
    )
    assert not report.passed
    verdicts = {result.name: result for result in report.results}
    result = verdicts[broken]
    assert not result.passed
    if dies:  # the pipeline died at the first throttle
        assert not result.alive
    else:  # an older origin's writes overwrote newer ones, the pipeline running on
        assert result.alive and result.diff.differences > 0
