"""The whole service (``run_service``) against faulty regions and misconfigured targets."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from replicator.aws.factory import Clients
from replicator.aws.tables import ensure_table
from replicator.config.schema import Config, load_config
from replicator.demo.embedded import free_port
from replicator.demo.loadgen import LoadGenerator
from replicator.errors import ConfigError
from replicator.service.run import build_pipelines, metrics_for, run_service
from tests.e2e.helpers import SOURCE, TARGET, converged, create_tables, write_config
from tests.faulty import FaultyEndpoint
from tests.functional.test_lag import scraped

KEYED_PK_SK = [("pk", "HASH", "S"), ("sk", "RANGE", "N")]


async def start_up_refusal(
    config: Config,
    table: str,
    source_key: list[tuple[str, str, str]],
    target_key: list[tuple[str, str, str]],
) -> str:
    """The ConfigError start-up raises for ``table`` keyed so in the source and the target."""
    clients = Clients(config.endpoints)
    metrics = metrics_for(config)
    try:
        source = await clients.json("dynamodb", SOURCE)
        await ensure_table(source, table, source_key, stream=True)
        await ensure_table(await clients.json("dynamodb", TARGET), table, target_key)
        with pytest.raises(ConfigError) as raised:
            await build_pipelines(config, clients, metrics=metrics, stop=asyncio.Event())
    finally:
        await clients.aclose()
        metrics.shutdown()
    return str(raised.value)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("target_key", "spelled"),
    [
        ([("pk", "HASH", "S")], "(pk S HASH)"),
        ([("pk", "HASH", "S"), ("sk", "RANGE", "S")], "(pk S HASH, sk S RANGE)"),
        ([("id", "HASH", "S"), ("sk", "RANGE", "N")], "(id S HASH, sk N RANGE)"),
        ([("sk", "HASH", "N"), ("pk", "RANGE", "S")], "(sk N HASH, pk S RANGE)"),
    ],
    ids=["range-key-missing", "range-key-type", "hash-key-name", "hash-and-range-swapped"],
)
async def test_a_target_keyed_otherwise_than_its_source_is_refused_at_start_up(
    endpoints: dict[str, str],
    unique_name: str,
    tmp_path: Path,
    target_key: list[tuple[str, str, str]],
    spelled: str,
) -> None:
    config = load_config(write_config(tmp_path / "r.yaml", endpoints, unique_name))
    message = await start_up_refusal(config, unique_name, KEYED_PK_SK, target_key)
    assert f"table {unique_name} in {TARGET} is keyed {spelled}" in message
    assert "its source is keyed (pk S HASH, sk N RANGE)" in message
    assert "create the target with the source's key schema" in message


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_fifth_of_all_requests_faulted_in_both_regions_the_service_survives_and_converges(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    faulty = {
        region: FaultyEndpoint(endpoints[region], rate=0.2, seed=n)
        for n, region in enumerate((SOURCE, TARGET))
    }
    direct_path = write_config(tmp_path / "direct.yaml", endpoints, unique_name)
    await create_tables(load_config(direct_path))
    async with faulty[SOURCE].serving() as source_url, faulty[TARGET].serving() as target_url:
        config = load_config(
            write_config(
                tmp_path / "faulty.yaml",
                {SOURCE: source_url, TARGET: target_url},
                unique_name,
            )
        )
        stop = asyncio.Event()
        metrics = metrics_for(config)
        service = asyncio.create_task(run_service(config, stop=stop, metrics=metrics))
        clients = Clients(endpoints)
        try:
            load = LoadGenerator(await clients.json("dynamodb", SOURCE), unique_name, keys=60)
            await load.run(operations=200, concurrency=4)
            # Generous: on a loaded machine one moto server takes a few puts a second.
            await converged(direct_path, within=200)
            assert not service.done(), _outcome(service)
            exported = metrics.prometheus_text().decode()
        finally:
            stop.set()
            async with asyncio.timeout(30):  # SIGTERM's drain still ends promptly
                await service
            await clients.aclose()
            metrics.shutdown()

    injected = faulty[SOURCE].injected + faulty[TARGET].injected
    assert set(injected) == {"throttling", "throughput", "internal", "html-503", "dropped"}
    assert metrics.total("retries") >= sum(injected.values()) // 2
    assert "replicator_records_throttled_total{" in exported


def _outcome(task: asyncio.Task[Any]) -> str:
    return repr(task.exception()) if task.done() else "running"


@pytest.mark.timeout(60)
async def test_regions_down_at_start_up_are_waited_out_and_stop_still_ends_it_promptly(
    unique_name: str, tmp_path: Path
) -> None:
    nowhere = {region: f"http://127.0.0.1:{free_port()}" for region in (SOURCE, TARGET)}
    config = load_config(write_config(tmp_path / "r.yaml", nowhere, unique_name))
    stop, metrics = asyncio.Event(), metrics_for(config)
    service = asyncio.create_task(run_service(config, stop=stop, metrics=metrics))
    try:
        async with asyncio.timeout(30):
            while metrics.total("retries") < 3:
                assert not service.done(), _outcome(service)
                await asyncio.sleep(0.05)
        failing = scraped(
            metrics, "replicator_aws_call_failing_seconds", call="DescribeTable", region=SOURCE
        )
        assert failing > 0
    finally:
        stop.set()
        async with asyncio.timeout(5):
            await service  # returns: a stop during start-up is not an error
        metrics.shutdown()


@pytest.mark.timeout(60)
async def test_a_key_attribute_under_the_metadata_prefix_is_refused_at_start_up(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    path = write_config(tmp_path / "r.yaml", endpoints, unique_name)
    path.write_text(path.read_text() + "metadata_prefix: _\n")
    key = [("_id", "HASH", "S")]  # every item would lose its key on the way
    message = await start_up_refusal(load_config(path), unique_name, key, key)
    assert f"table {unique_name}'s key attribute '_id' starts with metadata_prefix '_'" in message
