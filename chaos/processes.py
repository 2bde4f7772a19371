"""Real ``replicator run`` processes behind fault proxies, one moto server per region.

The replicators reach every region through a ``FaultProxy`` in HTTP mode; the chaos
driver's writers, canary and checks go to moto directly, so a fault only ever hits the
replicator. Every process is killed when the rig closes, however the scenario ended.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from chaos.lifecycle import Lifecycle
from chaos.outcome import Visible
from chaos.proxy import FaultProxy, Faults
from replicator.apply.rule import visible
from replicator.aws.factory import Clients
from replicator.aws.json_client import Kinesis
from replicator.aws.tables import ensure_table
from replicator.models import Meta

META = Meta(version="version")
KEY = [("pk", "HASH", "S")]
STOP_TIMEOUT_SECONDS = 30.0
CLI = [sys.executable, "-m", "replicator"]


class ProcessRig(Lifecycle):
    """One scenario's tables, proxies and replicator processes (``name`` prefixes tables)."""

    def __init__(self, endpoints: dict[str, str], name: str, workdir: Path, seed: int) -> None:
        self.endpoints = endpoints
        self.table = f"chaos-{name}-{seed}-{random.Random().getrandbits(24):06x}"
        self.name = name
        self.workdir = workdir
        self.seed = seed
        self.clients = Clients(endpoints)
        self.proxies: dict[str, FaultProxy] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.nemesis: Counter[str] = Counter()
        self.poison: list[str] = []  # keys of the poison items written to the source

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for region, url in self.endpoints.items():
            parts = urlsplit(url)
            assert parts.hostname is not None and parts.port is not None
            faults = Faults(rng=random.Random(f"{self.seed}-{self.name}-{region}"))
            proxy = FaultProxy((parts.hostname, parts.port), faults=faults, http=True)
            await proxy.start()
            self.proxies[region] = proxy

    async def aclose(self) -> None:
        """Kill what still runs, close proxies and clients (idempotent)."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)  # a stopped process cannot die otherwise
                process.kill()
                await asyncio.to_thread(process.wait, 10)
        for proxy in self.proxies.values():
            await proxy.aclose()
        await self.clients.aclose()

    # -- tables and processes ---------------------------------------------------------

    async def db(self, region: str) -> Any:
        return await self.clients.json("dynamodb", region)

    async def kinesis(self, region: str) -> Kinesis:
        return await self.clients.json("kinesis", region)

    async def create_tables(self, regions: list[str], *, stream_in: list[str]) -> None:
        for region in regions:
            await ensure_table(
                await self.db(region),
                self.table,
                KEY,
                stream=region in stream_in,
                ttl_attribute="_rep_expires",
            )

    def write_config(self, source: str, targets: list[str], *, mode: str, **pair: Any) -> Path:
        data = {
            "source_region": source,
            "mode": mode,
            "endpoints": {r: self.proxies[r].url for r in [source, *targets]},
            "control_table": f"{self.table}-control",
            "dlq_table": f"{self.table}-dlq",
            "pairs": [
                {
                    "source_table": self.table,
                    "version_attribute": "version",
                    "targets": [{"region": r, "table": self.table} for r in targets],
                    **pair,
                }
            ],
            "web": {"enabled": False},
            "heartbeat": {"enabled": False},
        }
        path = self._config(source)
        path.write_text(yaml.safe_dump(data))
        return path

    def _config(self, region: str) -> Path:
        return self.workdir / f"{self.name}-{region}.yaml"

    def _log(self, region: str) -> Path:
        return self.workdir / f"{self.name}-{region}.log"

    def launch(self, region: str) -> None:
        with self._log(region).open("ab") as log:
            self.processes[region] = subprocess.Popen(
                [*CLI, "run", "-c", str(self._config(region))],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=os.environ.copy(),
            )

    async def cli(self, region: str, *args: str) -> subprocess.CompletedProcess[str]:
        """``replicator <args>`` with ``region``'s config, to its end (bounded)."""
        return await asyncio.to_thread(
            subprocess.run,
            [*CLI, *args, "-c", str(self._config(region))],
            capture_output=True,
            text=True,
            timeout=STOP_TIMEOUT_SECONDS * 2,
            check=False,
            env=os.environ.copy(),
        )

    def alive(self) -> bool:
        return all(process.poll() is None for process in self.processes.values())

    async def kill_and_restart(self, region: str, down: float) -> None:
        process = self.processes[region]
        process.kill()
        await asyncio.to_thread(process.wait, 10)
        self.nemesis["kill -9"] += 1
        await asyncio.sleep(down)
        self.launch(region)

    async def pause_process(self, region: str, seconds: float) -> None:
        self.processes[region].send_signal(signal.SIGSTOP)
        self.nemesis["SIGSTOP"] += 1
        try:
            await asyncio.sleep(seconds)
        finally:
            self.processes[region].send_signal(signal.SIGCONT)

    async def stop_process(self, region: str) -> bool:
        """SIGTERM ``region``'s process; True when it drained and exited 0 in time."""
        process = self.processes[region]
        process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(process.wait, STOP_TIMEOUT_SECONDS) == 0
        except subprocess.TimeoutExpired:
            return False

    async def terminate(self) -> bool:
        """SIGTERM every process; True when each drained and exited 0 in time."""
        clean = True
        for region in self.processes:
            clean = await self.stop_process(region) and clean
        return clean

    def log_text(self, region: str) -> str:
        path = self._log(region)
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tail(self, lines: int = 3) -> str:
        tails: list[str] = []
        for region in self.processes:
            text = self.log_text(region).strip().splitlines()
            tails.extend(f"[{region}] {line}" for line in text[-lines:])
        return " | ".join(tails)

    def injected(self) -> dict[str, int]:
        total: Counter[str] = Counter(self.nemesis)
        for proxy in self.proxies.values():
            total.update(proxy.stats.injected)
        return dict(total)

    # -- reading back -----------------------------------------------------------------

    async def state(self, region: str) -> dict[str, Visible]:
        return {item["pk"]["S"]: visible(item, META) for item in await self._scan(region)}

    async def dlq_entries(self, region: str) -> list[dict[str, Any]]:
        return await self._scan(region, f"{self.table}-dlq")

    async def _scan(self, region: str, table: str | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": table or self.table, "ConsistentRead": True}
        db = await self.db(region)
        for _ in range(10_000):  # pages; a scenario's tables are small
            page = await db.scan(**kwargs)
            items.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return items
