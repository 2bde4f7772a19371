"""``replicator run`` from a private subnet: every request through the proxy the SDK's
settings name, and a certificate that does not verify stopping it with the fix named.

The config's endpoints are names only the test's proxy resolves (``*.invalid``): a request
that went around the proxy fails, so convergence itself says that none did. The test's
own calls (tables, load, verify) go to moto directly, through a config of their own.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from yarl import URL

from replicator.aws.factory import Clients
from replicator.config.schema import load_config
from replicator.demo.loadgen import LoadGenerator
from tests.e2e.helpers import CLI, SOURCE, TARGET, converged, create_tables, write_config
from tests.network_rig import certificate, forward_proxy, tls_front

pytestmark = [pytest.mark.slow]
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
PASSWORD = "n0t-in-logs"


def environment(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    return {**env, **settings}


def address(endpoint: str) -> tuple[str, int]:
    url = URL(endpoint)
    assert url.host is not None and url.port is not None
    return url.host, url.port


async def stopped(process: asyncio.subprocess.Process) -> int:
    """SIGTERM, then its exit code: a graceful stop, its drain served by the proxy."""
    process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(process.wait(), timeout=30)
    except TimeoutError:
        process.kill()
        raise


@pytest.mark.timeout(120)
async def test_run_behind_an_http_proxy_sends_every_request_through_it_and_converges(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    direct = write_config(tmp_path / "direct.yaml", endpoints, unique_name)
    hidden = {region: f"http://dynamodb.{region}.invalid:4566" for region in (SOURCE, TARGET)}
    routes = {URL(hidden[r]).raw_authority: address(endpoints[r]) for r in (SOURCE, TARGET)}
    proxied = write_config(tmp_path / "replicator.yaml", hidden, unique_name)
    await create_tables(load_config(direct))
    log = tmp_path / "run.log"
    async with forward_proxy(routes, credentials=f"replicator:{PASSWORD}") as (proxy, port):
        env = environment(HTTP_PROXY=f"http://replicator:{PASSWORD}@127.0.0.1:{port}")
        with log.open("ab") as out:
            process = await asyncio.create_subprocess_exec(
                *CLI,
                "run",
                "-c",
                str(proxied),
                "--log-level",
                "INFO",
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
            )
        clients = Clients(load_config(direct).endpoints)
        try:
            source = await clients.json("dynamodb", SOURCE)
            await LoadGenerator(source, unique_name, keys=30, seed=5).run(
                operations=150, concurrency=2
            )
            await converged(direct, within=60)
        finally:
            await clients.aclose()
            code = await stopped(process)
    assert code == 0, log.read_text()[-3000:]
    operations = {s.operation for s in proxy.seen}
    assert {"DescribeStream", "GetRecords", "PutItem"} <= operations, operations
    assert {s.authorization for s in proxy.seen} == {"Basic cmVwbGljYXRvcjpuMHQtaW4tbG9ncw=="}
    assert PASSWORD not in log.read_text()


@pytest.mark.timeout(60)
async def test_run_against_a_certificate_that_does_not_verify_exits_naming_aws_ca_bundle(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    cert_file, key_file = certificate(tmp_path)
    async with tls_front(address(endpoints[TARGET]), cert_file, key_file) as port:
        endpoint = f"https://127.0.0.1:{port}"
        config = write_config(
            tmp_path / "replicator.yaml", {**endpoints, TARGET: endpoint}, unique_name
        )
        await create_tables(load_config(write_config(tmp_path / "d.yaml", endpoints, unique_name)))
        process = await asyncio.create_subprocess_exec(
            *CLI,
            "run",
            "-c",
            str(config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=environment(),  # AWS_CA_BUNDLE as the machine has it: the system's CAs
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=45)
    text = output.decode()
    assert process.returncode == 2, text[-3000:]
    lines = [line for line in text.splitlines() if "does not verify" in line]
    assert len(lines) == 1, text[-3000:]
    assert endpoint in lines[0] and "AWS_CA_BUNDLE" in lines[0]
