"""Two ``replicator run`` processes with one config form one deployment (DESIGN §6).

Every AWS request of both processes goes through one counting proxy per region, which
tells the processes apart by the instance name in their User-Agent. A short lease keeps
the scenarios bounded.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from replicator.aws.factory import clients as aws_clients
from replicator.config.schema import Config, load_config
from replicator.demo.loadgen import LoadGenerator
from replicator.tools.status import fetch_status
from tests.e2e.counting_proxy import CountingProxy, counting_proxy
from tests.e2e.helpers import (
    SOURCE,
    TARGET,
    cli,
    converged,
    create_tables,
    start_run,
    stop,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.slow]

# Short, but not so short that a loaded test machine makes renewals miss it.
LEASE = {"duration_seconds": 8.0, "write_timeout_seconds": 2.5, "margin_seconds": 1.0}
WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")


@dataclass
class Deployment:
    config_path: Path
    config: Config
    proxies: dict[str, CountingProxy]
    tmp_path: Path

    def start(self, name: str) -> Process:
        log = self.tmp_path / f"{name}.log"
        return Process(name, start_run(self.config_path, log), log)

    def requests(self, process: Process, *, since: float = 0.0) -> dict[str, int]:
        """What ``process`` sent: GetRecords, target writes, checkpoint and DLQ writes."""
        counts = {"GetRecords": 0, "target writes": 0, "checkpoints": 0, "dlq writes": 0}
        target = self.config.pairs[0].targets[0].table
        for request in self.proxies[TARGET].by(process.pid, since=since):
            counts["target writes"] += request.operation in WRITES and request.table == target
        for request in self.proxies[SOURCE].by(process.pid, since=since):
            if request.operation == "GetRecords":
                counts["GetRecords"] += 1
            elif request.operation in WRITES and request.table == self.config.control_table:
                counts["checkpoints"] += request.partition.startswith("checkpoint#")
            elif request.operation in WRITES and request.table == self.config.dlq_table:
                counts["dlq writes"] += 1
        return counts


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def url(self) -> str | None:
        match = re.search(r"dashboard and /metrics on (\S+)", self.log.read_text())
        return match[1] if match else None

    async def status(self) -> dict[str, Any]:
        url = self.url()
        if url is None:
            return {}
        return await asyncio.to_thread(fetch_status, f"{url}/api/status", timeout=2)

    async def role(self) -> str:
        try:
            return str((await self.status()).get("service", {}).get("role", ""))
        except Exception:  # not serving yet, or frozen by SIGSTOP
            return ""


@asynccontextmanager
async def active_and_standby(
    endpoints: dict[str, str], table: str, tmp_path: Path
) -> AsyncIterator[tuple[Deployment, Any, Process, Process]]:
    """A deployment, a client of the source region, its active and its standby process.

    On exit both processes are stopped with SIGTERM (in a thread: the proxies live in this
    event loop and the drain needs them) and must exit 0 unless the test killed one.
    """
    async with AsyncExitStack() as stack:
        proxies, urls = {}, {}
        for region in (SOURCE, TARGET):
            proxies[region], urls[region] = await stack.enter_async_context(
                counting_proxy(endpoints[region])
            )
        path = write_config(tmp_path / "replicator.yaml", urls, table, web_port=0)
        data = yaml.safe_load(path.read_text())
        data["lease"] = LEASE
        path.write_text(yaml.safe_dump(data))
        ha = Deployment(path, load_config(path), proxies, tmp_path)
        await create_tables(ha.config)
        clients = await stack.enter_async_context(aws_clients(endpoints))
        processes: list[Process] = []
        try:
            processes.append(first := ha.start("first"))
            await wait_until(lambda: role_is(first, "active"), within=60, what="first active")
            processes.append(second := ha.start("second"))
            await wait_until(lambda: role_is(second, "standby"), within=60, what="second standby")
            yield ha, await clients.json("dynamodb", SOURCE), first, second
        finally:
            for process in processes:
                process.popen.send_signal(signal.SIGCONT)
                code = await asyncio.to_thread(stop, process.popen)
                assert code in (0, -signal.SIGKILL), process.log.read_text()[-3000:]


async def role_is(process: Process, role: str) -> bool:
    return await process.role() == role


async def verified(ha: Deployment) -> str:
    result = await asyncio.to_thread(cli, "verify", "-c", str(ha.config_path))
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.timeout(240)
async def test_kill_9_of_the_active_process_the_standby_takes_over_and_nothing_is_lost(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    async with active_and_standby(endpoints, unique_name, tmp_path) as (ha, source, first, second):
        url = second.url()
        assert url is not None
        async with aiohttp.ClientSession() as http, http.get(f"{url}/readyz") as answer:
            assert answer.status == 200, await answer.text()  # a healthy standby is ready
        (lease,) = (await second.status())["leases"]
        assert lease["holder"] == (await first.status())["service"]["instance"]
        shown = await asyncio.to_thread(cli, "status", "-c", str(ha.config_path), "--url", url)
        assert "role standby" in shown.stdout and f":{first.pid}:" in shown.stdout, shown.stdout

        # Steady state: the active replicates, the standby only watches the lease.
        await LoadGenerator(source, unique_name, keys=100, seed=12).run(operations=600)
        await converged(ha.config_path, within=120)
        active, standby = ha.requests(first), ha.requests(second)
        assert active["GetRecords"] > 0 and active["target writes"] > 0, active
        assert active["checkpoints"] > 0, active
        nothing = {"GetRecords": 0, "target writes": 0, "checkpoints": 0, "dlq writes": 0}
        assert standby == nothing, standby
        lease_reads = [r for r in ha.proxies[SOURCE].by(second.pid) if r.operation == "GetItem"]
        assert len(lease_reads) > 3  # it does watch

        # kill -9 the active in the middle of a load.
        load = asyncio.create_task(
            LoadGenerator(source, unique_name, keys=100, seed=13).run(operations=600)
        )
        await wait_until(
            lambda: _more_writes(ha, first, active["target writes"] + 20),
            within=60,
            what="the active writing the new load",
        )
        first.popen.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        await wait_until(
            lambda: role_is(second, "active"), within=30, what="the takeover", every=0.05
        )
        takeover = time.monotonic() - killed_at
        assert takeover <= LEASE["duration_seconds"] + 5, takeover
        await load
        await converged(ha.config_path, within=120)
        assert ha.requests(second, since=killed_at)["target writes"] > 0
        assert "0 differences" in await verified(ha)
    print(f"takeover after kill -9: {takeover:.2f} s (lease {LEASE['duration_seconds']} s)")


async def _more_writes(ha: Deployment, process: Process, count: int) -> bool:
    return ha.requests(process)["target writes"] >= count


@pytest.mark.timeout(240)
async def test_a_paused_active_process_neither_writes_nor_checkpoints_once_its_lease_is_lost(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    async with active_and_standby(endpoints, unique_name, tmp_path) as (ha, source, first, second):
        load = asyncio.create_task(
            LoadGenerator(source, unique_name, keys=100, seed=21).run(operations=1500)
        )
        await wait_until(lambda: _more_writes(ha, first, 50), within=60, what="the active writing")

        first.popen.send_signal(signal.SIGSTOP)
        paused_at = time.monotonic()
        await wait_until(
            lambda: role_is(second, "active"), within=30, what="the standby to take over"
        )
        # The scenario, not a synchronisation: the pause outlasts the lease itself too.
        await asyncio.sleep(max(0.0, paused_at + LEASE["duration_seconds"] - time.monotonic()))
        resumed_at = time.monotonic()
        first.popen.send_signal(signal.SIGCONT)

        await wait_until(lambda: role_is(first, "standby"), within=30, what="first to stand by")
        await load
        await converged(ha.config_path, within=120)
        after = ha.requests(first, since=resumed_at)
        assert after["target writes"] == 0, after
        assert after["checkpoints"] == 0, after
        assert after["dlq writes"] == 0, after
        assert ha.requests(second, since=resumed_at)["target writes"] > 0
        assert "lost the lease" in first.log.read_text()
        assert "0 differences" in await verified(ha)
