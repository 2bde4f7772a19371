"""``replicator chaos``: the quick suite passes in CI, and the suite can fail.

The suite's teeth are shown by breaking the pipeline through the seams its in-process
scenarios are built from (``chaos.scenario.Seams``), as the functional tests do: a
target writer that sends no condition expression, and a writer and stream source that
never retry. The product has no switch for either.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chaos.scenario import Seams
from chaos.suite import run_suite
from replicator.apply.applier import ChangeWriter
from replicator.errors import AwsError
from replicator.models import Change, Outcome
from replicator.stream.source import MAX_RECORDS_PER_CALL, Page, Shard, StreamSource

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


def _no_retry(exc: AwsError) -> AwsError:
    if not exc.retryable:
        return exc
    return AwsError(f"retries disabled: {exc}", code=exc.code)


class NeverRetryingWriter:
    def __init__(self, inner: ChangeWriter) -> None:
        self._inner = inner

    async def put(self, change: Change, *, now: float) -> Outcome:
        try:
            return await self._inner.put(change, now=now)
        except AwsError as exc:
            raise _no_retry(exc) from exc


class NeverRetryingSource:
    def __init__(self, inner: StreamSource) -> None:
        self._inner = inner

    async def stream_arn(self, table: str) -> str:
        return await self._inner.stream_arn(table)

    async def shards(self, stream_arn: str) -> list[Shard]:
        return await self._inner.shards(stream_arn)

    async def iterator(self, stream_arn: str, shard_id: str, *, after: str | None) -> str:
        try:
            return await self._inner.iterator(stream_arn, shard_id, after=after)
        except AwsError as exc:
            raise _no_retry(exc) from exc

    async def get_records(self, iterator: str, *, limit: int = MAX_RECORDS_PER_CALL) -> Page:
        try:
            return await self._inner.get_records(iterator, limit=limit)
        except AwsError as exc:
            raise _no_retry(exc) from exc


def test_list_names_at_least_fourteen_scenarios() -> None:
    listed = subprocess.run(
        [*CLI, "--list"], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    assert len(listed) >= 14
    assert len(set(listed)) == len(listed)
    for needed in ("target-blackhole", "kill-9-restart", "sigstop-sigcont", "poison-items"):
        assert needed in listed


def test_an_unknown_scenario_is_refused_with_the_way_to_list_them() -> None:
    answer = subprocess.run(
        [*CLI, "--scenario", "no-such"], capture_output=True, text=True, timeout=60, check=False
    )
    assert answer.returncode == 2
    assert "replicator chaos --list" in answer.stderr


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_quick_suite_passes_every_scenario(tmp_path: Path) -> None:
    answer = subprocess.run(
        [*CLI, "--scenario", "all", "--quick", "--seed", "7", "--out", str(tmp_path)],
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


@pytest.mark.timeout(300)
def test_a_writer_without_the_condition_fails_the_reorder_scenario(
    endpoints: dict[str, str], tmp_path: Path
) -> None:
    report = run_suite(
        "stream-origins-reorder",
        quick=True,
        seed=3,
        out=tmp_path,
        endpoints=endpoints,
        seams=Seams(put_client=UnconditionalPuts),
    )
    assert not report.passed
    (result,) = report.results
    assert result.diff.differences > 0, "an older origin's writes overwrote newer ones"


@pytest.mark.timeout(300)
def test_disabled_retries_fail_the_throttling_scenarios(
    endpoints: dict[str, str], tmp_path: Path
) -> None:
    report = run_suite(
        "stream-throttled,stream-expired-iterator",
        quick=True,
        seed=3,
        out=tmp_path,
        endpoints=endpoints,
        seams=Seams(writer=NeverRetryingWriter, source=NeverRetryingSource),
    )
    assert not report.passed
    for result in report.results:
        assert not result.passed, result.name
        assert not result.alive or result.diff.differences > 0
