"""A pair that reads Kinesis Data Streams, end to end (DESIGN §4c): ``replicator run`` as a
process, the lab's bridge delivering the source table's changes as Kinesis does (random
shards, duplicates, held-back records, ties, another table's records, replays of a window),
checked by ``replicator verify``; then across a ``kill -9`` and a ``replicator replay``.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chaos.kinesis_scenarios import summaries
from replicator.aws.factory import Clients
from replicator.aws.json_client import DynamoDB
from replicator.aws.tables import ensure_table
from replicator.config.schema import load_config
from replicator.demo.embedded import free_port
from replicator.demo.kinesis_bridge import KinesisBridge
from replicator.demo.kinesis_delivery import Delivery
from replicator.demo.kinesis_lab import bridging
from replicator.demo.kinesis_stream import FOREIGN_MARK, ensure_stream
from replicator.demo.loadgen import LoadGenerator
from replicator.errors import ReplicatorError
from replicator.tools.status import fetch_status
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

SHARDS = 3
OTHER_KEYS = 20


async def recreate_with_version_reset(db: DynamoDB, table: str, key: str) -> None:
    """v1, v2, v3, a delete, and the key created again at version 1 (one-way's contract)."""
    for version in (1, 2, 3):
        await db.put_item(TableName=table, Item=_item(key, version, f"first life v{version}"))
    await db.delete_item(TableName=table, Key={"pk": {"S": key}})
    await db.put_item(TableName=table, Item=_item(key, 1, "second life"))


def _item(key: str, version: int, note: str) -> dict[str, Any]:
    return {"pk": {"S": key}, "version": {"N": str(version)}, "note": {"S": note}}


async def target_items(db: DynamoDB, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    request: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = await db.scan(**request)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=2) as response:
        body: bytes = response.read()
        return body


@dataclass
class Lab:
    """The running pieces: a ``replicator run`` process, the bridge, the source table."""

    config_path: Path
    table: str
    source: DynamoDB
    bridge: KinesisBridge
    log: Path
    web_port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = start_run(self.config_path, self.log)

    def stop(self) -> None:
        assert self.process is not None
        assert stop(self.process) == 0, self.log.read_text()[-3000:]

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    async def converged(self) -> None:
        await self.bridge.drained()
        await converged(self.config_path, within=90)

    async def kill_9_mid_load(self) -> int:
        """A load running, the replicator killed half way and restarted; its changes."""
        assert self.process is not None
        before = self.bridge.counts["changes"]
        load = asyncio.create_task(
            LoadGenerator(self.source, self.table, keys=60, seed=12).run(
                operations=400, concurrency=2, rate=100
            )
        )

        async def mid_stream() -> bool:
            return self.bridge.counts["changes"] >= before + 100

        await wait_until(mid_stream, within=60, what="the second load half way in the stream")
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.start()
        await load
        await self.converged()
        return self.bridge.counts["changes"] - before

    async def totals(self) -> dict[str, Any]:
        """The running process's totals (empty while it is not serving yet)."""
        url = f"http://127.0.0.1:{self.web_port}/api/status"
        try:
            status = await asyncio.to_thread(fetch_status, url, timeout=2)
        except ReplicatorError:
            return {}
        totals: dict[str, Any] = status["totals"]
        return totals

    async def records_read(self) -> int:
        return int((await self.totals()).get("records_read", 0))

    async def tie_reads(self) -> float:
        """``replicator_kinesis_tie_reads_total`` as the process's ``/metrics`` exports it."""
        url = f"http://127.0.0.1:{self.web_port}/metrics"
        text = await asyncio.to_thread(_get, url)
        return sum(
            sample.value
            for family in text_string_to_metric_families(text.decode())
            for sample in family.samples
            if sample.name == "replicator_kinesis_tie_reads_total"
        )

    def replay(self, since: float) -> None:
        when = datetime.fromtimestamp(since, UTC).isoformat()
        answer = cli("replay", "-c", str(self.config_path), "--pair", self.table, "--since", when)
        assert answer.returncode == 0, answer.stdout + answer.stderr


async def first_load_kill_9_and_replay(lab: Lab, target: DynamoDB, other: str) -> int:
    """The three phases; how many changes the replay went back over."""
    lab.start()
    # 1. INSERT, MODIFY, REMOVE, re-creates with the version reset to 1, and another
    # table's changes in the same stream.
    stats = await LoadGenerator(lab.source, lab.table, keys=60, seed=11).run(
        operations=500, concurrency=4
    )
    assert stats.counts["delete"] > 10 and stats.counts["recreate"] > 3, stats
    await recreate_with_version_reset(lab.source, lab.table, "reset-to-1")
    for n in range(OTHER_KEYS):
        await lab.source.put_item(TableName=other, Item=_item(f"other-{n}", 1, "elsewhere"))
    await lab.converged()
    counts = lab.bridge.counts
    for kind in ("ties", "held", "duplicate", "replayed", "foreign"):
        assert counts[kind] > 0, (kind, counts)  # every delivery option came into play
    items = await target_items(target, lab.table)
    assert not [i for i in items if i["pk"]["S"].startswith("other-")]
    assert not [i for i in items if FOREIGN_MARK in i]
    reset = next(i for i in items if i["pk"]["S"] == "reset-to-1")
    assert (reset["version"]["N"], reset["note"]["S"]) == ("1", "second life")
    # Read and skipped, not lost on the way; and ties were settled from the source.
    assert (await lab.totals())["skipped"].get("other-table", 0) >= OTHER_KEYS
    assert await lab.tie_reads() > 0

    # 2. kill -9 in the middle of a load, restart: converges again.
    replay_from = time.time() - 1
    changes = await lab.kill_9_mid_load()

    # 3. Stopped, replayed from before the second load, restarted: it reads those
    # records again and the target still converges.
    lab.stop()
    lab.replay(replay_from)
    lab.start()

    async def reread() -> bool:
        return await lab.records_read() >= changes

    await wait_until(reread, within=60, what=f"the replayed run to read {changes} records")
    await lab.converged()
    lab.stop()
    return changes


@pytest.mark.timeout(300)
async def test_kinesis_pair_converges_through_kinesis_delivery_kill_9_and_replay(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    stream, other = f"{unique_name}-changes", f"{unique_name}-other"
    web_port = free_port()
    config_path = write_config(
        tmp_path / "replicator.yaml",
        endpoints,
        unique_name,
        web_port=web_port,
        kinesis_stream=stream,
    )
    config = load_config(config_path)
    await create_tables(config)
    clients = Clients(config.endpoints)
    source, target = await clients.json("dynamodb", SOURCE), await clients.json("dynamodb", TARGET)
    await ensure_table(source, other, [("pk", "HASH", "S")], stream=True)
    await ensure_stream(await clients.json("kinesis", SOURCE), stream, shards=SHARDS)
    delivery = Delivery.like_kinesis(seed=25)
    log = tmp_path / "run.log"
    try:
        async with bridging(clients, SOURCE, [unique_name, other], stream, delivery) as bridge:
            lab = Lab(config_path, unique_name, source, bridge, log, web_port)
            try:
                changes = await first_load_kill_9_and_replay(lab, target, other)
            finally:
                lab.kill()
    finally:
        await clients.aclose()

    # Without the replay the last run would read only what was written after it started.
    reread = summaries(log.read_text())[-1]["records_read"]
    assert reread >= changes > 0, (reread, changes)
    result = cli("verify", "-c", str(config_path))
    assert result.returncode == 0 and "0 differences" in result.stdout, result.stdout
