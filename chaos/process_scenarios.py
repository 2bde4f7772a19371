"""Scenarios over real ``replicator run`` processes: writers, a fault schedule, a heal,
a drain and the final check (``chaos.outcome``).

One-way scenarios replicate us-east-1 to eu-west-1 with one process; the three-region
scenario runs one active-active process per region with writers in all three.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from chaos.httpfaults import FaultKind, HttpFault
from chaos.outcome import Diff, Result, compare, expected_state
from chaos.probe import CANARY, Canary, drain
from chaos.processes import ProcessRig
from chaos.scenario import Budget, Context
from replicator.demo.activeload import ActiveActiveLoad, Write

SOURCE, TARGET = "us-east-1", "eu-west-1"
MESH = ("ap-southeast-2", "eu-west-1", "us-east-1")
# moto's item limit (DynamoDB's is 400 KB; moto measures names and values its own way).
# The oversized item fills it to within a few bytes: the source takes it, and once the
# replicator adds its metadata a target cannot.
MOTO_ITEM_LIMIT = 405_000
HEADROOM_LEFT = 8
_deserialize = TypeDeserializer().deserialize

Schedule = Callable[[ProcessRig, Canary, Budget], Awaitable[None]]


class ScheduleFailed(Exception):
    """A fault schedule could not do what it set out to (a row's error, not a crash)."""


# -- fault schedules ---------------------------------------------------------------------


def proxy_faults(
    label: str, shape: Callable[[ProcessRig, Budget], None], *, regions: tuple[str, ...] = ()
) -> Schedule:
    """Apply ``shape`` to the proxies of ``regions`` (all when empty), wait, heal."""

    async def schedule(rig: ProcessRig, canary: Canary, budget: Budget) -> None:
        canary.timeline.mark(f"fault: {label}")
        shape(rig, budget)
        await asyncio.sleep(budget.blackhole if "blackhole" in label else budget.fault)
        for region in regions or tuple(rig.proxies):
            rig.proxies[region].faults.heal()
        canary.heal()

    return schedule


def http_errors(kind: FaultKind, *, only: str = "", boost: float = 1.0) -> Schedule:
    """``kind`` on ``budget.share`` of the requests (times ``boost``: Streams calls are few)."""

    def shape(rig: ProcessRig, budget: Budget) -> None:
        for proxy in rig.proxies.values():
            proxy.faults.http = [HttpFault(kind, min(1.0, budget.share * boost), only)]

    return proxy_faults(f"{kind.value} on a share of the requests to both regions", shape)


def latency(rig: ProcessRig, budget: Budget) -> None:
    for proxy in rig.proxies.values():
        proxy.faults.up_delay = proxy.faults.down_delay = 0.05
        proxy.faults.jitter = 0.15


def bandwidth(rig: ProcessRig, budget: Budget) -> None:
    for proxy in rig.proxies.values():
        proxy.faults.bandwidth = 16_000.0  # bytes/s per link: a 1000-record page takes seconds


def target_blackhole(rig: ProcessRig, budget: Budget) -> None:
    rig.proxies[TARGET].faults.blackhole = True


async def kill_and_restart(rig: ProcessRig, canary: Canary, budget: Budget) -> None:
    canary.timeline.mark("fault: kill -9")
    await rig.kill_and_restart(SOURCE, down=budget.fault / 3)
    canary.timeline.mark("restarted")
    await asyncio.sleep(budget.fault / 3)
    canary.timeline.mark("fault: kill -9")
    await rig.kill_and_restart(SOURCE, down=0.0)
    canary.heal()


async def stop_and_continue(rig: ProcessRig, canary: Canary, budget: Budget) -> None:
    canary.timeline.mark("fault: SIGSTOP")
    await rig.pause_process(SOURCE, budget.fault)
    canary.heal()


def wide_area(rig: ProcessRig, budget: Budget) -> None:
    """Round trips as between continents, with jitter, between every pair of regions."""
    for proxy in rig.proxies.values():
        proxy.faults.up_delay = proxy.faults.down_delay = 0.04
        proxy.faults.jitter = 0.04


# -- runners -----------------------------------------------------------------------------


async def one_way(ctx: Context, name: str, schedule: Schedule) -> Result:
    result = Result(name, "process")
    async with ProcessRig(ctx.endpoints, name, ctx.workdir, ctx.seed) as rig:
        await rig.create_tables([SOURCE, TARGET], stream_in=[SOURCE])
        rig.write_config(SOURCE, [TARGET], mode="one-way")
        rig.launch(SOURCE)
        await exercise(rig, ctx, result, schedule, writers=[SOURCE], checked=[TARGET])
        if rig.poison:
            result.poison = len(rig.poison)
            result.poison_in_dlq = await poison_in_dlq(rig, rig.poison)
    return result


async def three_regions(ctx: Context, name: str, schedule: Schedule) -> Result:
    result = Result(name, "process")
    async with ProcessRig(ctx.endpoints, name, ctx.workdir, ctx.seed) as rig:
        await rig.create_tables(list(MESH), stream_in=list(MESH))
        for region in MESH:
            rig.write_config(region, [r for r in MESH if r != region], mode="active-active")
            rig.launch(region)
        await exercise(rig, ctx, result, schedule, writers=list(MESH), checked=list(MESH))
    return result


async def exercise(
    rig: ProcessRig,
    ctx: Context,
    result: Result,
    schedule: Schedule,
    *,
    writers: list[str],
    checked: list[str],
) -> None:
    """Writers and canary, warm-up, the schedule, heal, drain, check, SIGTERM."""
    budget, timeline = ctx.budget, result.timeline
    canary = Canary(
        canary_writer(rig, writers[0]), canary_reader(rig, writers[0], checked), timeline
    )
    loads = [
        ActiveActiveLoad(
            await rig.db(r), rig.table, keys=budget.keys, seed=ctx.seed * 10 + i, region=r
        )
        for i, r in enumerate(writers)
    ]
    stop = asyncio.Event()
    limit = budget.warm + budget.before + budget.blackhole + budget.fault + budget.after + 60
    async with asyncio.TaskGroup() as group:
        group.create_task(canary.run(stop, limit=limit))
        for load in loads:
            # One worker per region: moto can give two concurrent writes one SequenceNumber.
            group.create_task(load.run(operations=1_000_000, concurrency=1, stop=stop))
        try:
            await warm_up(canary, budget.warm)
            await asyncio.sleep(budget.before)
            await schedule(rig, canary, budget)
            await asyncio.sleep(budget.after)
        except (TimeoutError, ScheduleFailed) as exc:
            result.error = str(exc)
        finally:
            stop.set()
    writes: list[Write] = [w for load in loads for w in load.log] + canary.log
    result.writes = len(writes)
    expected = expected_state(writes)

    async def check() -> Diff:
        diff = Diff()
        for region in checked:
            diff.add(compare(expected, await rig.state(region), region=region))
        return diff

    result.diff = await drain(canary, check, within=budget.drain, dead=lambda: not rig.alive())
    result.faults = rig.injected()
    result.alive = rig.alive()
    if not result.alive:
        result.error = (result.error or "") + " log: " + rig.log_tail()
    result.required["every replicator drains and exits 0 on SIGTERM"] = await rig.terminate()


async def warm_up(canary: Canary, within: float) -> None:
    """Wait until the first canary reached every target (the replicators are running)."""
    deadline = canary.timeline.now() + within
    while await canary.seen() < 1:
        if canary.timeline.now() > deadline:
            raise TimeoutError(f"no replicator replicated its first write within {within:.0f} s")
        await asyncio.sleep(0.2)
    canary.timeline.mark("replicating")
    canary.timeline.measured_from = canary.timeline.now()


def canary_writer(rig: ProcessRig, region: str) -> Callable[[int], Awaitable[Write]]:
    async def write(version: int) -> Write:
        item = {"pk": {"S": CANARY}, "version": {"N": str(version)}}
        await (await rig.db(region)).put_item(TableName=rig.table, Item=item)
        return Write(CANARY, version, False, region, {k: _deserialize(v) for k, v in item.items()})

    return write


def canary_reader(rig: ProcessRig, source: str, regions: list[str]) -> Callable[[], Awaitable[int]]:
    async def seen() -> int:
        held = []
        for region in regions:
            if region == source:
                continue
            answer = await (await rig.db(region)).get_item(
                TableName=rig.table, Key={"pk": {"S": CANARY}}, ConsistentRead=True
            )
            held.append(int(answer["Item"]["version"]["N"]) if "Item" in answer else 0)
        return min(held)

    return seen


# -- poison ------------------------------------------------------------------------------


async def poison(rig: ProcessRig, canary: Canary, budget: Budget) -> None:
    canary.timeline.mark("fault: poison items written")
    rig.poison = await write_poison(rig)
    rig.nemesis["poison records"] += len(rig.poison)
    await asyncio.sleep(budget.fault)
    canary.heal()


async def write_poison(rig: ProcessRig) -> list[str]:
    """Three records a target rejects for what they are; each must land in the DLQ."""
    filler = MOTO_ITEM_LIMIT - HEADROOM_LEFT - len("pkpoison-oversizedversion1blob")
    items = {
        "poison-oversized": {"version": {"N": "1"}, "blob": {"S": "x" * filler}},
        "poison-unversioned": {"note": {"S": "no version attribute"}},
        "poison-version-type": {"version": {"S": "seven"}},
    }
    db = await rig.db(SOURCE)
    for key, attributes in items.items():
        await db.put_item(TableName=rig.table, Item={"pk": {"S": key}, **attributes})
    return list(items)


async def poison_in_dlq(rig: ProcessRig, keys: list[str]) -> int:
    """How many of ``keys`` a DLQ entry names (in its record, plain or compressed)."""
    try:
        entries = await rig.dlq_entries(SOURCE)
    except ClientError:
        return 0
    text = " ".join(_readable(entry) for entry in entries)
    return sum(1 for key in keys if key in text)


def _readable(entry: dict[str, Any]) -> str:
    parts = [json.dumps(entry, default=str)]
    for value in entry.values():
        if "B" in value:
            raw = value["B"] if isinstance(value["B"], bytes) else base64.b64decode(value["B"])
            for inflate in (gzip.decompress, zlib.decompress):
                try:
                    parts.append(inflate(raw).decode(errors="replace"))
                    break
                except (OSError, zlib.error, EOFError):
                    continue
    return " ".join(parts)
