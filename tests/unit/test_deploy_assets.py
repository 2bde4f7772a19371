"""The Grafana dashboard and Prometheus rules in deploy/ name only metrics the service exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from replicator.errors import ThrottledError
from replicator.ha.lease import LeaseState
from replicator.models import Outcome, TargetRef
from replicator.telemetry.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "replicator.json"
PROMETHEUS = ROOT / "deploy" / "prometheus"
CONTRACT = ROOT / "docs" / "telemetry-contract.md"

METRIC = re.compile(r"\breplicator_[a-z_]+")
SELECTOR = re.compile(r"\b(replicator_[a-z_]+)\{([^}]*)\}")
MATCHER_LABEL = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
# Grafana fills these in before the query reaches Prometheus.
GRAFANA_MACROS = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$source_table": ".*",
    "$target_region": ".*",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


@cache
def exported() -> dict[str, frozenset[str]]:
    """Sample name -> label names, as scraped from a Metrics that saw every kind of event."""
    metrics = Metrics(source_region="us-east-1")
    target = TargetRef("eu-west-1", "orders")
    try:
        metrics.register_pair(
            "orders",
            target,
            in_flight=lambda: 1,
            queue_depth=lambda: 2,
            concurrency_limit=lambda: 3,
        )
        for outcome in Outcome:
            metrics.outcome("orders", target, outcome)
        metrics.outcome("orders", target, Outcome.APPLIED, lag=0.3)
        metrics.heartbeat("orders", target, sent_at=1.0, lag=0.05)
        metrics.records_read("orders", 3, newest_created_at=1.0, shard_id="shardId-1")
        metrics.get_records_call("orders")
        metrics.millis_behind("orders", "shardId-1", 1500)
        metrics.skipped("orders", "echo")
        metrics.retried("throttled")
        metrics.trimmed("orders", "shardId-1")
        metrics.version_regression("orders", target)
        metrics.conflict("orders", target, loser_region="eu-west-1", winner_region="us-east-1")
        metrics.conflict_unrecorded("orders")
        metrics.tie_read("orders")
        metrics.shard("orders", "shardId-1", target, reading=True, checkpoint="42")
        metrics.shards_without_reader("orders", 1)
        metrics.call_failing("target write", "eu-west-1", ThrottledError("slow down"))
        metrics.lease("orders", LeaseState.HOLDING, "host:1:abc")
        text = metrics.prometheus_text().decode()
    finally:
        metrics.shutdown()
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in names.items()}


def contract_names() -> set[str]:
    """Sample names promised by the table in docs/telemetry-contract.md."""
    names: set[str] = set()
    for name, kind in re.findall(r"^\| (replicator_[a-z_]+) \| (\w+)", CONTRACT.read_text(), re.M):
        if kind == "histogram":
            names.update(name + suffix for suffix in HISTOGRAM_SUFFIXES)
        else:
            names.add(name)
    return names


def strings_under(node: Any, keys: set[str]) -> Iterator[str]:
    """Every string value stored under one of ``keys``, anywhere in a JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in keys and isinstance(value, str):
                yield value
            else:
                yield from strings_under(value, keys)
    elif isinstance(node, list):
        for item in node:
            yield from strings_under(item, keys)


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def dashboard_queries() -> list[str]:
    """Panel expressions and template-variable queries."""
    return list(strings_under(dashboard(), {"expr", "query", "definition"}))


def as_sent_by_grafana(expr: str) -> str:
    for macro, value in sorted(GRAFANA_MACROS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(macro, value)
    return expr


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def unknown_metrics(texts: list[str]) -> set[str]:
    return {name for text in texts for name in METRIC.findall(text)} - set(exported())


def label_problems(expr: str) -> list[str]:
    """Labels an expression filters or groups on that its metrics do not carry."""
    labels = exported()
    problems = []
    for name, matchers in SELECTOR.findall(expr):
        missing = set(MATCHER_LABEL.findall(matchers)) - labels.get(name, frozenset())
        problems += [f"{name} has no label {label!r}" for label in sorted(missing)]
    carried = {"le", "job", "instance"}.union(*(labels.get(n, ()) for n in METRIC.findall(expr)))
    for grouping in GROUPING.findall(expr):
        missing = {g.strip() for g in grouping.split(",") if g.strip()} - carried
        problems += [f"grouping by {label!r}, carried by none of its metrics" for label in missing]
    return problems


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not on PATH (Debian package `prometheus`; .ci/run installs it)")
    return subprocess.run(
        ["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


# -- the names themselves ------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_the_service_exports_exactly_the_metrics_the_contract_lists() -> None:
    ours = {name for name in exported() if name.startswith("replicator_")}
    assert ours == contract_names()


# -- Grafana --------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_dashboard_is_a_grafana_dashboard_with_panels_on_a_prometheus_variable() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 36
    assert board["uid"] and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert {"source_table", "target_region"} <= set(variables)

    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len(panels) >= 10
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            assert target["expr"].strip(), panel["title"]


@pytest.mark.timeout(30)
def test_every_metric_the_dashboard_queries_is_exported() -> None:
    queries = dashboard_queries()
    assert any(METRIC.search(q) for q in queries)
    assert unknown_metrics(queries) == set()


@pytest.mark.timeout(30)
def test_dashboard_filters_and_groups_only_on_labels_its_metrics_carry() -> None:
    problems = {q: label_problems(q) for q in dashboard_queries()}
    assert {q: p for q, p in problems.items() if p} == {}


@pytest.mark.timeout(30)
def test_dashboard_shows_the_writes_lost_to_concurrent_writers_by_region() -> None:
    lost = [
        panel
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
        if "replicator_conflicts_total" in target["expr"]
    ]
    assert {panel["type"] for panel in lost} == {"timeseries", "stat"}
    series = next(panel for panel in lost if panel["type"] == "timeseries")
    assert "replicator conflicts list" in series["description"]
    legend = series["targets"][0]["legendFormat"]
    assert "{{loser_region}}" in legend and "{{winner_region}}" in legend
    assert any("replicator_conflicts_unrecorded_total" in t["expr"] for t in series["targets"])


@pytest.mark.timeout(60)
def test_dashboard_expressions_are_valid_promql(tmp_path: Path) -> None:
    # promtool has no "parse this expression"; a recording rule per panel query does the job.
    rules = [
        {"record": f"dashboard:panel_query_{i}", "expr": as_sent_by_grafana(expr)}
        for i, expr in enumerate(strings_under(dashboard(), {"expr"}))
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# -- Prometheus rules -----------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_alert_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(60)
def test_alert_rules_pass_their_promtool_unit_tests() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(60)
def test_example_scrape_config_passes_promtool_check() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(30)
def test_every_alert_has_severity_summary_and_a_runbook_description() -> None:
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= {
        "ReplicatorReplicationLagHigh",
        "ReplicatorReplicationLagCritical",
        "ReplicatorHeartbeatStale",
        "ReplicatorHeartbeatStaleCritical",
        "ReplicatorDeadLetters",
        "ReplicatorTrimmedData",
        "ReplicatorShardWithoutReader",
        "ReplicatorVersionRegressions",
        "ReplicatorConflicts",
        "ReplicatorConflictsUnrecorded",
        "ReplicatorTargetDown",
        "ReplicatorAbsent",
    }
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert len(rule["annotations"]["description"]) > 100, rule["alert"]
    trimmed = next(r for r in rules if r["alert"] == "ReplicatorTrimmedData")
    assert trimmed["labels"]["severity"] == "critical"
    assert "replicator verify --repair" in trimmed["annotations"]["description"]
    conflicts = next(r for r in rules if r["alert"] == "ReplicatorConflicts")
    assert "replicator conflicts list" in conflicts["annotations"]["summary"]


@pytest.mark.timeout(30)
def test_every_metric_the_alerts_name_is_exported() -> None:
    rules = alert_rules()
    texts = [r["expr"] for r in rules] + [a for r in rules for a in r["annotations"].values()]
    assert unknown_metrics(texts) == set()


@pytest.mark.timeout(30)
def test_alerts_filter_and_group_only_on_labels_their_metrics_carry() -> None:
    problems = {r["alert"]: label_problems(r["expr"]) for r in alert_rules()}
    assert {a: p for a, p in problems.items() if p} == {}
