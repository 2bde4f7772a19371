"""A real Prometheus scrapes ``replicator run``: lag reaches it, and the shipped alert rules
and dashboard queries evaluate against what it scraped."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from replicator.aws.factory import Clients
from replicator.config.schema import load_config
from tests.e2e.helpers import SOURCE, create_tables, start_run, stop, wait_until, write_config

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_BIN = shutil.which("prometheus") or "/usr/bin/prometheus"
LAG_P99 = (
    "histogram_quantile(0.99, sum by (le) (rate(replicator_replication_lag_seconds_bucket[1m])))"
)
# What Grafana substitutes before a dashboard query reaches Prometheus.
GRAFANA_MACROS = {
    "$__rate_interval": "1m",
    "$__range": "5m",
    "$source_table": ".*",
    "$target_region": ".*",
}
# Panels whose counters appear only once something goes wrong: a healthy run may leave them empty.
QUIET_PANELS = {
    "Dead-lettered",
    "Retries and throttles",
    "Version regressions",
    "Trimmed data (data loss)",
    "Writes lost to concurrent writers",
    "Kinesis: behind latest / tie reads",  # Kinesis pairs only; the run reads DynamoDB Streams
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def start_prometheus(directory: Path, *, scrape_port: int, port: int) -> subprocess.Popen[bytes]:
    """Prometheus scraping the replicator every second, with the shipped alert rules."""
    shutil.copy(ROOT / "deploy" / "prometheus" / "alerts.yml", directory / "alerts.yml")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["alerts.yml"],
        "scrape_configs": [
            {
                "job_name": "replicator",
                "static_configs": [{"targets": [f"127.0.0.1:{scrape_port}"]}],
            }
        ],
    }
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    with (directory / "prometheus.log").open("ab") as log:
        return subprocess.Popen(
            [
                PROMETHEUS_BIN,
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            cwd=directory,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@contextlib.asynccontextmanager
async def running(process: subprocess.Popen[bytes], log: Path) -> AsyncIterator[None]:
    """Stop the process on the way out, whatever happened; after a clean run it must exit 0."""
    try:
        yield
    finally:
        code = await asyncio.to_thread(stop, process)
    assert code == 0, f"{log.name}: exit code {code}\n" + tail(log)


class PrometheusApi:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base

    async def get(self, path: str, **params: str) -> Any:
        """The ``data`` of a successful answer; None while the server is not up yet."""
        try:
            async with self.session.get(f"{self.base}{path}", params=params) as response:
                if response.status == 503:  # starting: not listening for queries yet
                    return None
                body = await response.json()
        except aiohttp.ClientConnectionError:
            return None
        assert body["status"] == "success", body  # a bad query is a failure, not a wait
        return body["data"]

    async def values(self, query: str) -> list[float]:
        """Sample values of an instant query (empty before the first scrape)."""
        data = await self.get("/api/v1/query", query=query)
        return [float(series["value"][1]) for series in (data or {}).get("result", [])]

    async def rules(self) -> list[dict[str, Any]]:
        data = await self.get("/api/v1/rules")
        return [rule for group in (data or {}).get("groups", []) for rule in group["rules"]]


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, query as Grafana sends it) for every panel query of the dashboard."""
    board = json.loads((ROOT / "deploy" / "grafana" / "replicator.json").read_text())
    queries = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            query = target["expr"]
            for macro, value in GRAFANA_MACROS.items():
                query = query.replace(macro, value)
            queries.append((panel["title"], query))
    return queries


@contextlib.asynccontextmanager
async def writing_to_source(clients: Clients, table: str) -> AsyncIterator[list[int]]:
    """A steady trickle of versioned writes, so every scrape sees new lag observations."""
    written = [0]

    async def keep_writing() -> None:
        source = await clients.json("dynamodb", SOURCE)
        while True:
            item = {"pk": {"S": f"item-{written[0]}"}, "version": {"N": "1"}}
            await source.put_item(TableName=table, Item=item)
            written[0] += 1
            await asyncio.sleep(0.1)  # pacing the load, not waiting for anything

    writer = asyncio.create_task(keep_writing())
    try:
        yield written
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer  # a failed write surfaces here


@pytest.mark.timeout(180)
@pytest.mark.skipif(not os.access(PROMETHEUS_BIN, os.X_OK), reason="prometheus is not installed")
async def test_prometheus_scrapes_replication_lag_from_replicator_run(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    web_port, prometheus_port = free_port(), free_port()
    config_path = write_config(
        tmp_path / "replicator.yaml", endpoints, unique_name, web_port=web_port
    )
    config = load_config(config_path)
    await create_tables(config)
    run_log, prometheus_log = tmp_path / "run.log", tmp_path / "prometheus.log"

    replicator = start_run(config_path, run_log)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(running(replicator, run_log))
        prometheus = start_prometheus(tmp_path, scrape_port=web_port, port=prometheus_port)
        await stack.enter_async_context(running(prometheus, prometheus_log))
        session = await stack.enter_async_context(aiohttp.ClientSession())
        api = PrometheusApi(session, f"http://127.0.0.1:{prometheus_port}")

        async def scraped_and_up() -> bool:
            assert replicator.poll() is None, tail(run_log)
            assert prometheus.poll() is None, tail(prometheus_log)
            return await api.values('up{job="replicator"}') == [1.0]

        async def lag_counted() -> bool:
            counts = await api.values("replicator_replication_lag_seconds_count")
            return any(count > 0 for count in counts)

        async def p99_known() -> bool:
            return any(math.isfinite(v) and v > 0 for v in await api.values(LAG_P99))

        async def applied_rate_known() -> bool:
            rates = await api.values("sum(rate(replicator_records_applied_total[1m]))")
            return any(v > 0 for v in rates)

        await wait_until(scraped_and_up, within=60, what="Prometheus to scrape the replicator")
        clients = Clients(config.endpoints)
        stack.push_async_callback(clients.aclose)
        async with writing_to_source(clients, unique_name) as written:

            async def writing() -> bool:  # the heartbeat alone would satisfy the waits below
                return written[0] > 0

            await wait_until(writing, within=60, what="the test's writes to reach the source")
            await wait_until(lag_counted, within=60, what="a lag observation in Prometheus")
            await wait_until(p99_known, within=60, what="a finite p99 lag from Prometheus")
            await wait_until(applied_rate_known, within=60, what="a rate of applied records")

        (p99,) = await api.values(LAG_P99)
        assert 0 < p99 < 60, "lag between local moto servers is well under a minute"
        assert await api.values("replicator_heartbeat_age_seconds"), "no heartbeat age gauge"

        # The shipped alert rules load, evaluate against the real series, and stay quiet.
        async def rules_evaluated() -> bool:
            rules = await api.rules()
            return bool(rules) and all(rule["health"] == "ok" for rule in rules)

        await wait_until(rules_evaluated, within=30, what="every alert rule to evaluate")
        active = {r["name"]: r["state"] for r in await api.rules() if r["state"] != "inactive"}
        assert active == {}, "a healthy replicator raises no alert"

        # Every dashboard query is valid PromQL here (get() asserts success), and every panel
        # but the trouble counters shows data.
        queries = dashboard_queries()
        showing = {title for title, query in queries if await api.values(query)}
        assert {title for title, _ in queries} - showing <= QUIET_PANELS
