"""The operator's commands give up loudly after a bounded outage (issue 19).

``replicator run`` outlives any outage; ``verify``, ``backfill`` and ``dlq`` retry for
``--give-up-after`` seconds of consecutive failures, then exit 1 with one line naming the
call, the region, the last error and how to carry on. Run as users run them.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from chaos.proxy import FaultKind, FaultProxy, Faults, HttpFault
from replicator.aws.factory import Clients
from replicator.config.schema import load_config
from replicator.demo.embedded import free_port
from tests.e2e.helpers import CLI, SOURCE, TARGET, cli, create_tables, write_config

pytestmark = pytest.mark.timeout(60)
BOUND = 2.0  # seconds: the test's --give-up-after
# Interpreter start-up and imports of a loaded machine on top of the bound.
WITHIN = BOUND + 20


def nowhere() -> dict[str, str]:
    """Endpoints on loopback where nothing listens: every connection is refused."""
    return {region: f"http://127.0.0.1:{free_port()}" for region in (SOURCE, TARGET)}


def the_one_line(stderr: str) -> str:
    """The verdict: the last line, after the rate-limited WARNINGs of the retries."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("gave up "), stderr
    assert sum(line.startswith("gave up ") for line in lines) == 1, stderr
    return lines[-1]


@pytest.mark.parametrize(
    ("command", "resume"),
    [
        (["verify"], "verify writes nothing: run it again"),
        (["dlq", "list"], "nothing was changed: run it again"),
        (["dlq", "purge", "--older-than", "1d"], "run the same command again for the rest"),
    ],
    ids=["verify", "dlq-list", "dlq-purge"],
)
def test_a_command_against_a_region_that_refuses_connections_gives_up_with_one_line(
    tmp_path: Path, command: list[str], resume: str
) -> None:
    path = write_config(tmp_path / "r.yaml", nowhere(), "orders")
    started = time.monotonic()
    result = cli(*command, "-c", str(path), "--give-up-after", str(BOUND), timeout=WITHIN)
    elapsed = time.monotonic() - started

    assert result.returncode == 1, result.stderr
    assert elapsed >= BOUND
    line = the_one_line(result.stderr)
    assert line.startswith("gave up ")
    assert f"in {SOURCE} failed for 2 s" in line
    assert "last error: connection failed" in line
    assert resume in line


def test_the_bound_can_come_from_the_environment(tmp_path: Path) -> None:
    path = write_config(tmp_path / "r.yaml", nowhere(), "orders")
    env = {**os.environ, "REPLICATOR_GIVE_UP_AFTER": "1"}
    result = subprocess.run(
        [*CLI, "dlq", "list", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=WITHIN,
        env=env,
        check=False,
    )
    assert result.returncode == 1
    assert "failed for 1 s" in the_one_line(result.stderr)


async def tables_with(endpoints: dict[str, str], table: str, tmp_path: Path, keys: int) -> None:
    """The pair's tables, ``keys`` items in the source and none replicated."""
    await create_tables(load_config(write_config(tmp_path / "direct.yaml", endpoints, table)))
    clients = Clients(endpoints)
    try:
        source = await clients.json("dynamodb", SOURCE)
        for n in range(keys):
            item = {"pk": {"S": f"k{n}"}, "version": {"N": "1"}}
            await source.put_item(TableName=table, Item=item)
    finally:
        await clients.aclose()


async def run_with_target_writes_failing(
    endpoints: dict[str, str], table: str, tmp_path: Path, *args: str
) -> tuple[int | None, str, str, int]:
    """``replicator <args>`` with every PutItem on the target answered 500; its exit code,
    stdout, stderr and how many writes were refused."""
    parts = urlsplit(endpoints[TARGET])
    assert parts.hostname is not None and parts.port is not None
    down = Faults(http=[HttpFault(FaultKind.SERVER_ERROR, 1.0, only="DynamoDB_20120810.PutItem")])
    async with FaultProxy((parts.hostname, parts.port), faults=down, http=True) as proxy:
        path = write_config(tmp_path / "proxied.yaml", {**endpoints, TARGET: proxy.url}, table)
        process = await asyncio.create_subprocess_exec(
            *CLI,
            *args,
            "-c",
            str(path),
            "--give-up-after",
            str(BOUND),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(WITHIN):
            stdout, stderr = await process.communicate()
    refused = proxy.stats.injected[FaultKind.SERVER_ERROR.value]
    return process.returncode, stdout.decode(), stderr.decode(), refused


async def test_backfill_into_a_target_answering_500_gives_up_and_says_how_to_resume(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    await tables_with(endpoints, unique_name, tmp_path, keys=3)
    code, stdout, stderr, refused = await run_with_target_writes_failing(
        endpoints, unique_name, tmp_path, "backfill"
    )
    assert code == 1, stderr
    line = the_one_line(stderr)
    assert f"target write in {TARGET} failed for 2 s" in line
    assert "last error: InternalServerError" in line
    assert "run the same command again to resume there" in line
    assert "written" not in stdout  # no summary claims writes that did not land
    assert refused >= 2


async def test_a_repair_whose_writes_keep_failing_gives_up_after_verify_found_the_keys(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    await tables_with(endpoints, unique_name, tmp_path, keys=1)  # missing on the target
    code, stdout, stderr, refused = await run_with_target_writes_failing(
        endpoints, unique_name, tmp_path, "verify", "--repair"
    )
    assert code == 1, stderr
    assert "missing" in stdout  # verify's reads went through: it found the key
    line = the_one_line(stderr)
    assert f"repair write in {TARGET} failed for 2 s" in line
    assert "run verify --repair again to finish" in line
    assert "repair:" not in stdout  # no "written" count for writes that did not land
    assert refused >= 2
