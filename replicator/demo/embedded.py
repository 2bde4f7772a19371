"""The embedded backend: one moto server process per region on loopback.

Regions stay apart even inside one moto server, but a process per region doubles
throughput and lets a test take a whole region down. Processes are always
terminated, whatever way the ``with`` block is left.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from replicator.errors import EmbeddedBackendError

LOOPBACK = "127.0.0.1"
START_TIMEOUT_SECONDS = 30.0
MOTO_SERVER = "replicator.demo.motoserver"  # moto with DynamoDB's atomic writes

# moto accepts any credentials; these placeholders keep boto3 from searching for real ones.
EMBEDDED_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "embedded",
    "AWS_SECRET_ACCESS_KEY": "embedded",
}


@contextlib.contextmanager
def embedded_credentials() -> Iterator[None]:
    """moto's placeholder credentials in the environment while the block runs."""
    saved = {name: os.environ.get(name) for name in EMBEDDED_CREDENTIALS}
    os.environ.update(EMBEDDED_CREDENTIALS)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class MotoServer:
    region: str
    port: int
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def terminate(self) -> None:
        """Ask the process to exit, without waiting (idempotent)."""
        if self.process.poll() is None:
            self.process.terminate()

    def stop(self) -> None:
        """Terminate the process and wait for it (idempotent)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _ready(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
            return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def start_moto(region: str, *, module: str = MOTO_SERVER) -> MotoServer:
    """Start a moto server for ``region`` on a free loopback port and wait until it answers.

    ``module`` is what ``python -m`` runs: moto's server made atomic, or another wrapper.
    """
    port = free_port()
    env = {**os.environ, **EMBEDDED_CREDENTIALS, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
    process = subprocess.Popen(
        [sys.executable, "-m", module, "-H", LOOPBACK, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    server = MotoServer(region=region, port=port, process=process)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmbeddedBackendError(
                f"moto server for {region} exited with code {process.returncode} on port {port}"
            )
        if _ready(server.endpoint):
            return server
        time.sleep(0.05)
    server.stop()
    raise EmbeddedBackendError(
        f"moto server for {region} did not answer on {server.endpoint} "
        f"within {START_TIMEOUT_SECONDS:.0f} s"
    )


@contextlib.contextmanager
def embedded_backend(
    regions: Sequence[str], *, module: str = MOTO_SERVER
) -> Iterator[dict[str, MotoServer]]:
    """One moto server per region; all are stopped when the block exits."""
    servers: dict[str, MotoServer] = {}
    try:
        for region in regions:
            servers[region] = start_moto(region, module=module)
        yield servers
    finally:
        # All at once: one after the other, a loaded machine spent seconds per server.
        for server in servers.values():
            server.terminate()
        for server in servers.values():
            server.stop()
