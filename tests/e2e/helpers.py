"""Running the ``replicator`` command as a user would, and waiting on observable facts."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from replicator.aws.factory import Clients
from replicator.aws.tables import ensure_table
from replicator.config.schema import Config, load_config
from replicator.tools.verify import Report, verify

SOURCE, TARGET = "us-east-1", "eu-west-1"
CLI = [sys.executable, "-m", "replicator"]


def write_config(
    path: Path,
    endpoints: dict[str, str],
    table: str,
    *,
    web_port: int | None = None,
    **pair: Any,
) -> Path:
    """A one-way us-east-1 -> eu-west-1 config; the web server only with ``web_port``."""
    data = {
        "source_region": SOURCE,
        "endpoints": {r: endpoints[r] for r in (SOURCE, TARGET)},
        "control_table": f"{table}-control",
        "dlq_table": f"{table}-dlq",
        "pairs": [
            {
                "source_table": table,
                "version_attribute": "version",
                "targets": [{"region": TARGET, "table": table}],
                **pair,
            }
        ],
        "web": {"enabled": False}
        if web_port is None
        else {"enabled": True, "host": "127.0.0.1", "port": web_port},
    }
    path.write_text(yaml.safe_dump(data))
    return path


async def create_tables(config: Config) -> None:
    clients = Clients(config.endpoints)
    try:
        for pair in config.pairs:
            key = [("pk", "HASH", "S")]
            await ensure_table(
                await clients.json("dynamodb", SOURCE), pair.source_table, key, stream=True
            )
            for target in pair.targets:
                await ensure_table(await clients.json("dynamodb", target.region), target.table, key)
    finally:
        await clients.aclose()


def start_run(config_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    return start_cli(log_path, "run", "-c", str(config_path), "--log-level", "INFO")


def start_cli(log_path: Path, *args: str) -> subprocess.Popen[bytes]:
    """``replicator <args>`` in the background, its output appended to ``log_path``."""
    with log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [*CLI, *args], stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy()
        )


def stop(process: subprocess.Popen[bytes], *, timeout: float = 30) -> int:
    if process.poll() is None:
        process.terminate()
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
        raise


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, within: float, what: str, every: float = 0.2
) -> None:
    """Poll an observable fact until it holds; fail naming it after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(every)


async def converged(config_path: Path, *, within: float) -> Report:
    """Wait until verify finds no difference; return the last report."""
    config = load_config(config_path)
    last = Report()

    async def clean() -> bool:
        nonlocal last
        last = await verify(config, recheck_delay=0.1)
        return not last.differences

    await wait_until(clean, within=within, what="source and target to converge", every=0.5)
    return last


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
    )
