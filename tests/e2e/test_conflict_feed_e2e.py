"""The conflict feed end to end (DESIGN §4b, issue 23 item 6): three regions, three
``replicator run`` processes, optimistic-locking writers on a few hot keys, and a kill -9.

Each writer records what it read and what its write overwrote (``ReturnValues=ALL_OLD``:
the write's **parent**). Once every region holds the same item, a write is **lost** when
that item does not descend from it, and a **fork** is a chain of lost writes. The feed, read
as an operator would (``replicator conflicts list --json``), must report at least 97 % of the
forks, name a write that was not lost in at most 3 % of its entries, and hold no entry twice.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.exceptions import ClientError

from replicator.aws.classify import is_conditional_check_failed
from replicator.aws.factory import Clients
from replicator.aws.json_client import DynamoDB
from replicator.aws.tables import ensure_table
from tests.e2e.feed_truth import Write, judge
from tests.e2e.helpers import cli, start_run, stop, wait_until
from tests.mesh import REGIONS, region_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

HOT_KEYS = tuple(f"h{i}" for i in range(8))
WRITES_PER_REGION = 200
# The writers' think time: writes of one region interleave with the other regions'
# replicated ones, so forks are short and many instead of one per key and region.
THINK_SECONDS = 0.1
FORKS_REPORTED_AT_LEAST = 0.97
FALSE_ENTRIES_AT_MOST = 0.03
VICTIM = REGIONS[1]
# Short, so the restarted replicator takes over from its killed self within seconds.
LEASE = {"duration_seconds": 8.0, "write_timeout_seconds": 2.5, "margin_seconds": 1.0}


@dataclass
class Writer:
    """GetItem, then PutItem or UpdateItem of ``version + 1`` conditional on ``version``."""

    region: str
    db: DynamoDB
    table: str
    rng: random.Random
    log: list[Write] = field(default_factory=list)
    refused: int = 0

    async def run(self, writes: int) -> None:
        attempt = 0
        while len(self.log) < writes:
            attempt += 1
            await self._attempt(f"{self.region}#{attempt}", self.rng.choice(HOT_KEYS))
            await asyncio.sleep(self.rng.uniform(0, 2 * THINK_SECONDS))

    async def _attempt(self, wid: str, key: str) -> None:
        pk = {"pk": {"S": key}}
        read = (await self.db.get_item(TableName=self.table, Key=pk, ConsistentRead=True)).get(
            "Item"
        )
        version = int(read["version"]["N"]) if read else 0
        new = {"version": {"N": str(version + 1)}, "wid": {"S": wid}}
        guard: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        if read is not None:
            guard = {
                "ConditionExpression": "#v = :v",
                "ExpressionAttributeNames": {"#v": "version"},
                "ExpressionAttributeValues": {":v": {"N": str(version)}},
            }
        try:
            # moto streams an UpdateItem that creates an item as two records, the first
            # with the key alone (DynamoDB streams one): create with PutItem only.
            if read is None or self.rng.random() < 0.5:
                answer = await self.db.put_item(
                    TableName=self.table, Item={**pk, **new}, ReturnValues="ALL_OLD", **guard
                )
            else:
                guard["ExpressionAttributeValues"].update(
                    {":next": new["version"], ":wid": new["wid"]}
                )
                answer = await self.db.update_item(
                    TableName=self.table,
                    Key=pk,
                    UpdateExpression="SET #v = :next, wid = :wid",
                    ReturnValues="ALL_OLD",
                    **guard,
                )
        except ClientError as exc:
            if not is_conditional_check_failed(exc):
                raise
            self.refused += 1
            return
        old = answer.get("Attributes")
        self.log.append(
            Write(wid, key, self.region, _wid(read), version + 1, _wid(old), time.monotonic())
        )


def _wid(item: dict[str, Any] | None) -> str | None:
    return item["wid"]["S"] if item else None


async def held(db: DynamoDB, table: str, keys: tuple[str, ...]) -> dict[str, tuple[str, int]]:
    """Key -> (write id, version) of the items ``db`` holds."""
    found: dict[str, tuple[str, int]] = {}
    for key in keys:
        response = await db.get_item(TableName=table, Key={"pk": {"S": key}}, ConsistentRead=True)
        item = response.get("Item")
        if item is not None:
            found[key] = (item["wid"]["S"], int(item["version"]["N"]))
    return found


async def the_same_everywhere(dbs: dict[str, DynamoDB], table: str, keys: tuple[str, ...]) -> bool:
    states = [await held(db, table, keys) for db in dbs.values()]
    return len(states[0]) == len(keys) and all(state == states[0] for state in states)


async def replicated_from(region: str, dbs: dict[str, DynamoDB], table: str) -> bool:
    """Whether another region holds one of ``region``'s writes: its replicator is at work."""
    for other, db in dbs.items():
        if other != region and any(
            wid.startswith(f"{region}#") for wid, _ in (await held(db, table, HOT_KEYS)).values()
        ):
            return True
    return False


@dataclass
class Mesh:
    """One ``replicator run`` per region, as an operator starts them."""

    paths: dict[str, Path]
    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, region: str) -> None:
        self.processes[region] = start_run(self.paths[region], self.logs / f"{region}.log")

    async def kill(self, region: str) -> None:
        self.processes[region].send_signal(signal.SIGKILL)
        assert await asyncio.to_thread(self.processes[region].wait, 10) == -signal.SIGKILL

    async def stop(self) -> None:
        """SIGTERM: each process drains its batches, their feed entries included."""
        while self.processes:
            region, process = self.processes.popitem()
            code = await asyncio.to_thread(stop, process)
            log = (self.logs / f"{region}.log").read_text()
            assert code == 0, log[-3000:]
            assert "dead-lettering" not in log, log[-3000:]


async def run_workload(mesh: Mesh, dbs: dict[str, DynamoDB], table: str) -> list[Writer]:
    """The writers, with a kill -9 of one replicator mid-run and its restart, drained."""
    writers = [Writer(r, dbs[r], table, random.Random(i)) for i, r in enumerate(REGIONS)]
    load = asyncio.gather(*(w.run(WRITES_PER_REGION) for w in writers))
    total = WRITES_PER_REGION * len(REGIONS)

    async def written(count: int) -> bool:
        return sum(len(w.log) for w in writers) >= count

    async def victim_at_work() -> bool:
        return await written(total // 3) and await replicated_from(VICTIM, dbs, table)

    await wait_until(victim_at_work, within=60, what=f"{VICTIM}'s replicator at work")
    await mesh.kill(VICTIM)
    killed_at = time.monotonic()
    await wait_until(lambda: written(2 * total // 3), within=60, what="two thirds of the writes")
    mesh.start(VICTIM)
    print(
        f"\nkill -9 of {VICTIM}'s replicator at {killed_at:.1f}, restart at {time.monotonic():.1f}"
    )
    await load
    # One last write per region, on a key of its own: once each is everywhere, every
    # replicator has read its stream past the writers' records.
    sentinels = tuple(f"end-{region}" for region in REGIONS)
    for region, key in zip(REGIONS, sentinels, strict=True):
        item = {"pk": {"S": key}, "version": {"N": "1"}, "wid": {"S": f"{region}#end"}}
        await dbs[region].put_item(TableName=table, Item=item)
    await wait_until(
        lambda: the_same_everywhere(dbs, table, (*HOT_KEYS, *sentinels)),
        within=90,
        what="every region to hold the same items",
    )
    await mesh.stop()
    return writers


async def test_the_feed_reports_the_writes_lost_by_optimistic_writers_in_three_regions(
    endpoints: dict[str, str], unique_name: str, tmp_path: Path
) -> None:
    table = unique_name
    paths = {region: tmp_path / f"{region}.yaml" for region in REGIONS}
    for region, path in paths.items():
        config = region_config(region, table, endpoints).model_dump(mode="json")
        path.write_text(yaml.safe_dump({**config, "lease": LEASE}))
    mesh = Mesh(paths, tmp_path)
    clients = Clients(endpoints)
    try:
        dbs = {r: await clients.json("dynamodb", r) for r in REGIONS}
        for db in dbs.values():
            await ensure_table(
                db, table, [("pk", "HASH", "S")], stream=True, ttl_attribute="_rep_expires"
            )
        for region in REGIONS:
            mesh.start(region)
        writers = await run_workload(mesh, dbs, table)
        final = {
            key: wid for key, (wid, _) in (await held(dbs[REGIONS[0]], table, HOT_KEYS)).items()
        }
    finally:
        for process in mesh.processes.values():
            await asyncio.to_thread(stop, process)
        await clients.aclose()

    any_region = str(paths[REGIONS[0]])  # names every region: its feed is the mesh's
    verified = await asyncio.to_thread(cli, "verify", "-c", any_region)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    listed = await asyncio.to_thread(cli, "conflicts", "list", "-c", any_region, "--json")
    assert listed.returncode == 0, listed.stderr
    entries = [e for e in json.loads(listed.stdout) if e["table"] == table]
    writes = [w for writer in writers for w in writer.log]
    figures = judge(entries, writes, final)
    figures.refused = sum(w.refused for w in writers)
    print(f"\nconflict feed e2e: {figures.line()}")
    for text in figures.missed[:10]:
        print(f"  fork not reported: {text}")
    for text in figures.false[:10]:
        print(f"  entry for a write not lost: {text}")
    assert figures.forks >= 10, "too few forks to measure anything"
    assert figures.duplicates == 0, figures.line()
    assert figures.fork_share >= FORKS_REPORTED_AT_LEAST, (
        figures.line(),
        figures.missed,
    )
    assert figures.false_share <= FALSE_ENTRIES_AT_MOST, (
        figures.line(),
        figures.false,
    )
