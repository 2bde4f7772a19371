"""``replicator run``'s start-up: the stream is read while the target's check crosses the
ocean, but nothing reaches a target before that check answered, and a failed check still
stops the service with its error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
import yaml

from replicator.aws.factory import Clients
from replicator.config.schema import Config, load_config
from replicator.demo.embedded import free_port
from replicator.errors import ConfigError
from replicator.service import startup
from replicator.service.run import metrics_for, run_service
from replicator.telemetry.metrics import Metrics
from tests.e2e.counting_proxy import CountingProxy, Request, counting_proxy
from tests.e2e.helpers import SOURCE, TARGET, create_tables, wait_until, write_config

pytestmark = pytest.mark.timeout(60)

HOLD = 0.5  # the target's DescribeTable answer: later than the stream's first read
ITEMS = 3


@asynccontextmanager
async def proxied(
    endpoints: dict[str, str], table: str, tmp_path: Path, *, web: bool = False
) -> AsyncIterator[tuple[Config, dict[str, CountingProxy]]]:
    """A one-way pair behind counting proxies (the target's check held ``HOLD`` s), with
    ``ITEMS`` items written to the source: the config and the proxies by region."""
    async with AsyncExitStack() as stack:
        proxies, urls = {}, {}
        for region, hold in ((SOURCE, {}), (TARGET, {"DescribeTable": HOLD})):
            proxies[region], urls[region] = await stack.enter_async_context(
                counting_proxy(endpoints[region], hold=hold)
            )
        path = write_config(tmp_path / "r.yaml", urls, table, web_port=0 if web else None)
        config = load_config(path)
        await create_tables(config)
        clients = Clients(endpoints)
        stack.push_async_callback(clients.aclose)
        source = await clients.json("dynamodb", SOURCE)
        for n in range(ITEMS):
            item = {"pk": {"S": f"k{n}"}, "version": {"N": "1"}}
            await source.put_item(TableName=table, Item=item)
        yield config, proxies


@asynccontextmanager
async def running(
    config: Config, on_web_started: list[str] | None = None
) -> AsyncIterator[Metrics]:
    stop, metrics = asyncio.Event(), metrics_for(config)
    started = None if on_web_started is None else on_web_started.append
    service = asyncio.create_task(
        run_service(config, stop=stop, metrics=metrics, on_web_started=started)
    )
    try:
        yield metrics
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await service
        metrics.shutdown()


def service_requests(proxy: CountingProxy) -> list[Request]:
    """The service's requests (not the test's own, which set the tables up)."""
    return [r for r in proxy.requests if "replicator-instance/" in r.agent]


def writes(proxy: CountingProxy) -> list[Request]:
    return [r for r in service_requests(proxy) if r.operation == "PutItem"]


async def test_the_stream_is_read_during_the_target_check_and_written_only_after_it(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    async with proxied(endpoints, unique_name, tmp_path) as (config, proxies), running(config):

        async def written() -> bool:
            return len(writes(proxies[TARGET])) >= ITEMS

        await wait_until(written, within=30, what="the items written to the target")
    source = service_requests(proxies[SOURCE])
    check = service_requests(proxies[TARGET])[0]
    assert check.operation == "DescribeTable"
    first_write = writes(proxies[TARGET])[0]
    assert first_write.at >= check.at + HOLD  # the check's answer came first
    read = next(r for r in source if r.operation == "GetRecords")
    assert read.at < check.at + HOLD  # the stream did not wait for it
    # The write reuses the check's connection (on AWS: its TLS handshake too).
    assert first_write.connection == check.connection
    # The source table is described once: its stream is the one start-up's check named.
    described = [r for r in source if r.operation == "DescribeTable" and r.table == unique_name]
    assert len(described) == 1


async def test_a_failed_target_check_stops_the_service_before_any_write(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    async with proxied(endpoints, unique_name, tmp_path) as (config, proxies):
        clients = Clients(endpoints)
        try:
            target = await clients.json("dynamodb", TARGET)
            await target.call("DeleteTable", {"TableName": unique_name})
            with pytest.raises(
                ConfigError, match=f"table {unique_name} does not exist in {TARGET}"
            ):
                async with asyncio.timeout(30):
                    await run_service(config, stop=asyncio.Event(), metrics=metrics_for(config))
            source = await clients.json("dynamodb", SOURCE)
            lease = await source.get_item(
                TableName=config.control_table,
                Key={"pk": {"S": f"lease#{unique_name}"}, "sk": {"S": "lease"}},
                ConsistentRead=True,
            )
            heartbeats = await source.scan(TableName=unique_name)
        finally:
            await clients.aclose()
    assert writes(proxies[TARGET]) == []
    # The lease taken meanwhile is given back: a standby takes over at once.
    assert lease.get("Item", {}).get("owner", {"S": ""})["S"] == ""
    assert heartbeats["Count"] == ITEMS  # no heartbeat either: it is replicated too


async def test_the_dashboard_starts_once_the_first_record_is_settled(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(startup, "DASHBOARD_LATEST_SECONDS", 30.0)
    urls: list[str] = []
    async with (
        proxied(endpoints, unique_name, tmp_path, web=True) as (config, _),
        running(config, urls) as metrics,
    ):

        async def serving() -> bool:
            return bool(urls)

        await wait_until(serving, within=30, what="the dashboard", every=0.05)
        # Loading the web server took 60 ms of CPU: it no longer delays the first write.
        assert metrics.total("applied") >= 1


async def test_with_nothing_to_replicate_the_dashboard_still_starts(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(startup, "DASHBOARD_LATEST_SECONDS", 0.2)
    path = write_config(tmp_path / "r.yaml", endpoints, unique_name, web_port=0)
    data = yaml.safe_load(path.read_text())
    data["heartbeat"] = {"enabled": False}  # no canary write either
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    await create_tables(config)
    urls: list[str] = []
    async with running(config, urls) as metrics:

        async def serving() -> bool:
            return bool(urls)

        await wait_until(serving, within=30, what="the dashboard", every=0.05)
        assert metrics.total("applied") == 0


async def test_a_failed_target_check_is_raised_while_the_source_is_still_waited_for(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    # The source's calls end interrupted when the failed check stops the service: what
    # is raised is still the check's error, not the interruption.
    regions = {SOURCE: f"http://127.0.0.1:{free_port()}", TARGET: endpoints[TARGET]}
    config = load_config(write_config(tmp_path / "r.yaml", regions, unique_name))
    with pytest.raises(ConfigError, match=f"table {unique_name} does not exist in {TARGET}"):
        async with asyncio.timeout(30):
            await run_service(config, stop=asyncio.Event(), metrics=metrics_for(config))
