"""Benchmark 10: from ``replicator run`` starting to its first replicated write.

The process is started as an operator starts it (the installed ``replicator`` command,
a config file, the default settings), on a moto source whose stream holds a few records
and whose control and DLQ tables exist (a restart, not a first install). The target is
the stub answering every request after the round trip; it announces the moment it took
the first PutItem, on the same machine clock as the start. Imports, config, start-up
checks and the first GetRecords are all inside the figure.

The package is byte-compiled first, as ``pip install`` leaves it (the container image
too): an editable checkout run under PYTHONDONTWRITEBYTECODE, as here, would otherwise
compile every replicator module at every start, 65 ms of CPU no operator pays.
"""

from __future__ import annotations

import asyncio
import compileall
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

import replicator
from bench.backlog import prepare, unique
from bench.env import SOURCE_REGION, TARGET_REGION, Backend, cpu_seconds, credentials, helper
from bench.results import Goal, Result
from bench.ui import progress
from replicator.aws.factory import Clients
from replicator.aws.tables import CONTROL_KEY, ensure_table
from replicator.demo.embedded import EMBEDDED_CREDENTIALS, embedded_backend

NAME = "10 start-up"
GOAL = Goal("<=", 0.5, "s")
RECORDS = 5
FIRST_WRITE_TIMEOUT_SECONDS = 30.0
COMMAND = Path(sys.executable).with_name("replicator")


async def _source(endpoint: str, table: str, control: str, dlq: str) -> None:
    """The source table with a few records on its stream, and the service's own tables."""
    backend = Backend(endpoint, endpoint, endpoint, 0.0)
    await prepare(backend, table, [], backlog=RECORDS)
    clients = Clients({SOURCE_REGION: endpoint})
    try:
        home = await clients.json("dynamodb", SOURCE_REGION)
        for name in (control, dlq):
            await ensure_table(home, name, CONTROL_KEY)
    finally:
        await clients.aclose()


def _config(path: Path, source: str, target: str, names: dict[str, str]) -> Path:
    document = {
        "source_region": SOURCE_REGION,
        "endpoints": {SOURCE_REGION: source, TARGET_REGION: target},
        "control_table": names["control"],
        "dlq_table": names["dlq"],
        "pairs": [
            {
                "source_table": names["source"],
                "targets": [{"region": TARGET_REGION, "table": "bench-startup-target"}],
            }
        ],
        "web": {"port": 0},
    }
    path.write_text(yaml.safe_dump(document))
    return path


def _first_write(stub: subprocess.Popen[bytes], within: float) -> float:
    """The unix time the stub announced its first PutItem."""
    assert stub.stdout is not None
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([stub.stdout], [], [], left)
        if not readable:
            break
        line = stub.stdout.readline().decode()
        if line.startswith("first-write "):
            return float(line.split()[1])
    raise RuntimeError(f"no write reached the target within {within:.0f} s")


def one_start(source: str, rtt: float, workdir: Path) -> tuple[float, float]:
    """(Seconds from spawning ``replicator run`` to the target's first write, CPU seconds
    the service had used by then)."""
    names = {kind: unique(f"startup-{kind}") for kind in ("source", "control", "dlq")}
    asyncio.run(_source(source, names["source"], names["control"], names["dlq"]))
    stub_command = [sys.executable, "-m", "bench.stub", "--rtt", str(rtt)]
    with helper(stub_command, name="stub endpoint") as (port, stub):
        target = f"http://127.0.0.1:{port}"
        config = _config(workdir / f"{names['source']}.yaml", source, target, names)
        env = {**os.environ, **EMBEDDED_CREDENTIALS}
        started = time.time()
        service = subprocess.Popen(
            [str(COMMAND), "run", "-c", str(config), "--log-level", "WARNING"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            first = _first_write(stub, FIRST_WRITE_TIMEOUT_SECONDS)
            return first - started, cpu_seconds(service.pid)
        finally:
            service.send_signal(signal.SIGTERM)
            try:
                service.wait(timeout=10)
            except subprocess.TimeoutExpired:
                service.kill()
                service.wait(timeout=5)


async def start_up(rounds: int, *, rtt: float) -> list[Result]:
    """Benchmark 10: the median of ``rounds`` starts, each with fresh tables."""
    starts: list[tuple[float, float]] = []
    for package in replicator.__path__:
        compileall.compile_dir(package, quiet=1)
    with (
        credentials(),
        embedded_backend([SOURCE_REGION]) as servers,
        tempfile.TemporaryDirectory() as workdir,
        progress(f"[10] {rounds} starts of replicator run", total=rounds) as update,
    ):
        source = servers[SOURCE_REGION].endpoint
        for done in range(rounds):
            starts.append(await asyncio.to_thread(one_start, source, rtt, Path(workdir)))
            update(done + 1)
    wall = statistics.median(s for s, _ in starts)
    cpu = statistics.median(c for _, c in starts)
    note = (
        f"median of {rounds} starts (default config, {rtt * 1000:.0f} ms RTT stub target, moto "
        f"source, control tables existing, package byte-compiled as pip leaves it): "
        f"{', '.join(f'{s:.2f}' for s, _ in starts)} s; two round trips of it are the "
        "target's start-up check and the write itself"
    )
    return [
        Result(NAME, "process start to first write", wall, "s", GOAL, note),
        Result(
            NAME,
            "CPU used by then",
            cpu,
            "s",
            None,
            "user + system CPU of the service at its first write: what a busy machine cannot "
            "inflate (imports, config, clients, first reads; the dashboard starts once that "
            "write is answered)",
        ),
    ]
