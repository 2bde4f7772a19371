"""The embedded backend for the network benchmarks, with round-trip time in front of the target.

    pipeline (this process) --local--> moto us-east-1   (source: stream, control, DLQ)
                            --proxy--> moto eu-west-1   (target; ``python -m chaos.proxy``)

The fault proxy runs in its own process, so its CPU is never counted as ours. Helper
processes print ``listening HOST:PORT`` once ready and are always terminated on exit.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from replicator.aws.http_pool import AUTO_CEILING
from replicator.aws.tables import ensure_table, wait_active
from replicator.demo.embedded import embedded_backend, embedded_credentials

ROOT = Path(__file__).resolve().parents[1]
SOURCE_REGION = "us-east-1"
TARGET_REGION = "eu-west-1"
DEFAULT_RTT_SECONDS = 0.08
READY_TIMEOUT_SECONDS = 20.0
# The stand-ins for the network and the far region (fault proxy, stub target) yield the
# cores to the source and the pipeline being measured: in a deployment they are other
# machines. Measured on bench 2 (stub, quiet machine): 0.92x -> 0.95x of moto's own
# GetRecords rate; moto, not the stub, is what a CPU-bound read side waits for.
REMOTE_NICENESS = 10
# Above the pipeline's largest pool: a closed connection the proxy has not yet counted
# as gone must not get the next one refused (a spurious retry in the counts).
PROXY_MAX_CONNECTIONS = 2 * AUTO_CEILING
_LISTENING = re.compile(rb"listening (127\.0\.0\.1):(\d+)")


@dataclass(frozen=True, slots=True)
class Backend:
    source_endpoint: str  # moto for the source region, no delay
    target_endpoint: str  # moto for the target region, direct (setup, checks)
    proxied_target: str  # the same target through the fault proxy: what the pipeline uses
    rtt: float
    target: Literal["moto", "stub"] = "moto"
    # The helper processes this benchmark started, by role ("moto source", "fault proxy",
    # ...): what shares the machine's cores with the pipeline.
    processes: Mapping[str, int] = field(default_factory=dict)

    @property
    def endpoints(self) -> dict[str, str]:
        """Region -> endpoint as the replicator sees them (the target across the 'ocean')."""
        return {SOURCE_REGION: self.source_endpoint, TARGET_REGION: self.proxied_target}


@contextlib.contextmanager
def announced(command: Sequence[str], *, name: str) -> Iterator[int]:
    """Run a helper process until the block exits; yields the port it announced."""
    with helper(command, name=name) as (port, _):
        yield port


@contextlib.contextmanager
def helper(command: Sequence[str], *, name: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """``announced``, also yielding the process (whose stdout says more after the port)."""
    process = subprocess.Popen(
        list(command), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        yield _wait_for_port(process, name), process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


def _wait_for_port(process: subprocess.Popen[bytes], name: str) -> int:
    assert process.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    seen = b""
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([process.stdout], [], [], left)
        if not readable:
            break
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"{name} exited with code {process.wait()} before it was ready")
        seen += line
        if match := _LISTENING.search(line):
            return int(match[2])
    raise RuntimeError(
        f"{name} did not announce its port in {READY_TIMEOUT_SECONDS:.0f} s: {seen!r}"
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU the process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1].rstrip("/"))


credentials = embedded_credentials  # moto's placeholders: no client looks for real ones


@contextlib.contextmanager
def backend(
    rtt: float = DEFAULT_RTT_SECONDS,
    *,
    endpoints: Mapping[str, str] | None = None,
    target: Literal["moto", "stub"] = "moto",
) -> Iterator[Backend]:
    """A moto source (started here unless given), a target, and the proxy in front of it.

    ``target="stub"``: the target is ``bench.stub``, which answers at once, so only the
    round trip bounds writes (moto spends milliseconds of CPU on each conditional put).
    The proxy and the stub run at ``REMOTE_NICENESS``.
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(credentials())
        processes: dict[str, int] = {}
        if endpoints is None:
            regions = [SOURCE_REGION] if target == "stub" else [SOURCE_REGION, TARGET_REGION]
            servers = stack.enter_context(embedded_backend(regions))
            endpoints = {region: server.endpoint for region, server in servers.items()}
            for region, server in servers.items():
                processes["moto source" if region == SOURCE_REGION else "moto target"] = (
                    server.process.pid
                )
        if target == "stub":
            stub_port, stub = stack.enter_context(
                helper([sys.executable, "-m", "bench.stub"], name="stub endpoint")
            )
            processes["stub target"] = stub.pid
            target_endpoint = f"http://127.0.0.1:{stub_port}"
        else:
            target_endpoint = endpoints[TARGET_REGION]
        proxy_port, proxy = stack.enter_context(
            helper(
                [
                    sys.executable,
                    "-m",
                    "chaos.proxy",
                    "--upstream",
                    f"127.0.0.1:{_port(target_endpoint)}",
                    "--rtt",
                    str(rtt),
                    "--max-connections",
                    str(PROXY_MAX_CONNECTIONS),
                ],
                name="fault proxy",
            )
        )
        processes["fault proxy"] = proxy.pid
        for name in ("fault proxy", "stub target"):
            if name in processes:
                os.setpriority(os.PRIO_PROCESS, processes[name], REMOTE_NICENESS)
        yield Backend(
            source_endpoint=endpoints[SOURCE_REGION],
            target_endpoint=target_endpoint,
            proxied_target=f"http://127.0.0.1:{proxy_port}",
            rtt=rtt,
            target=target,
            processes=processes,
        )


async def create_table(client: Any, name: str, *, stream: bool = False) -> None:
    """A benchmark table keyed by the string ``pk`` (bench.fakes' items)."""
    await ensure_table(client, name, [("pk", "HASH", "S")], stream=stream)
    await wait_active(client, name)
