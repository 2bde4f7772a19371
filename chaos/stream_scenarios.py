"""Stream faults, run in-process over the stream fake: a split in the middle of a
backlog, expired iterators, trimmed data, ranges delivered again after newer records,
throttled reads and writes, and one origin's stream held back behind another's.

Each scenario writes a backlog, starts the pipelines, runs its fault schedule next to a
paced writer and the canary, heals, drains and checks like the process scenarios.
"""

from __future__ import annotations

import asyncio
import random
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from chaos.httpfaults import FaultKind, HttpFault
from chaos.outcome import Diff, Result, Timeline, compare, expected_state
from chaos.probe import CANARY, Canary, drain
from chaos.scenario import Budget, Context
from chaos.streams import StreamRig
from replicator.demo.activeload import Write
from replicator.models import Mode

SOURCE, TARGET = "us-east-1", "eu-west-1"
AP, EU = "ap-southeast-2", "eu-west-1"
SHARD = "shard-0000"
WRITE_PACE_SECONDS = 0.01
MAX_WRITES = 100_000

StreamSchedule = Callable[[StreamRig, Canary, Budget], Awaitable[None]]


@dataclass(frozen=True)
class StreamPlan:
    schedule: StreamSchedule
    origins: tuple[str, ...] = (SOURCE,)
    target: str = TARGET
    mode: Mode = Mode.ONE_WAY
    held: tuple[str, ...] = ()  # origins whose pipeline the schedule starts, late
    rewrite_after_heal: bool = False  # every key written once more once the fault is over
    # The paced writes end at the heal: no later write of a key hides a stale delivery.
    quiet_after_heal: bool = False
    alarm: str | None = None  # a metric that must have counted the fault


async def run_stream(ctx: Context, name: str, plan: StreamPlan) -> Result:
    result = Result(name, "stream")
    budget = ctx.budget
    async with StreamRig(
        ctx, name, origins=list(plan.origins), target=plan.target, mode=plan.mode
    ) as rig:
        for _ in range(budget.backlog):
            rig.sim.write()

        async def write_canary(version: int) -> Write:
            return rig.sim.write(CANARY, plan.origins[0], may_delete=False)

        async def seen() -> int:
            return await rig.canary_seen(CANARY)

        canary = Canary(write_canary, seen, result.timeline)
        for origin in plan.origins:
            if origin not in plan.held:
                await rig.start_pipeline(origin)
        stop = asyncio.Event()
        limit = budget.fault * 4 + budget.after + budget.warm
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(canary.run(stop, limit=limit))
                group.create_task(
                    _paced_writes(rig, stop, canary.timeline if plan.quiet_after_heal else None)
                )
                try:
                    async with asyncio.timeout(limit):
                        await plan.schedule(rig, canary, budget)
                    await asyncio.sleep(budget.after)
                finally:
                    stop.set()
        except* TimeoutError:
            result.error = f"the fault schedule did not finish within {limit:.0f} s"
        if plan.rewrite_after_heal:
            for key in rig.sim.keys:
                rig.sim.write(key, may_delete=False)
        expected = expected_state(rig.sim.log)
        result.writes = len(rig.sim.log)

        async def check() -> Diff:
            return compare(expected, await rig.state(), region=plan.target)

        result.diff = await drain(
            canary, check, within=budget.drain, dead=lambda: rig.dead() is not None
        )
        if (dead := rig.dead()) is not None:
            result.alive, result.error = False, dead
        result.faults = dict(rig.injected + rig.proxy.stats.injected)
        if plan.alarm is not None:
            counted = sum(m.total(plan.alarm) for m in rig.metrics.values())
            result.required[f"the {plan.alarm} alarm was raised"] = counted >= 1
    return result


async def _paced_writes(rig: StreamRig, stop: asyncio.Event, until: Timeline | None) -> None:
    """Random writes every ``WRITE_PACE_SECONDS`` until ``stop``, or ``until`` heals."""
    for _ in range(MAX_WRITES):
        if stop.is_set() or (until is not None and until.healed_at is not None):
            return
        rig.sim.write()
        await asyncio.sleep(WRITE_PACE_SECONDS)


async def _after_reads(rig: StreamRig, calls: int, origin: str = SOURCE) -> None:
    await rig.streams[origin].wait_for_get_records(calls)


# -- schedules ---------------------------------------------------------------------------


async def split_mid_backlog(rig: StreamRig, canary: Canary, budget: Budget) -> None:
    await _after_reads(rig, 3)  # the backlog is several reads long: this is its middle
    canary.timeline.mark("fault: shard split mid-backlog")
    children = ["shard-0001", "shard-0002"]
    rig.streams[SOURCE].split(SHARD, children)
    rig.sim.shard_for = lambda key: children[zlib.crc32(key.encode()) % len(children)]
    rig.injected["shard split"] += 1
    await asyncio.sleep(budget.fault)
    canary.heal()


async def expired_iterators(rig: StreamRig, canary: Canary, budget: Budget) -> None:
    stream = rig.streams[SOURCE]
    canary.timeline.mark("fault: every third read finds its iterator expired")

    def expire(call: int) -> None:
        if call % 3 == 0:
            stream.expire_iterators()
            rig.injected["iterator expired"] += 1

    stream.before_get_records = expire
    await asyncio.sleep(budget.fault)
    stream.before_get_records = None
    canary.heal()


async def trimmed(rig: StreamRig, canary: Canary, budget: Budget) -> None:
    stream = rig.streams[SOURCE]
    await _after_reads(rig, 2)
    sequences = stream.sequences(SHARD)
    cut = len(sequences) * 2 // 3  # ahead of the reader, which is a read or two in
    canary.timeline.mark("fault: the oldest records age out before they are read")
    stream.trim(SHARD, sequences[cut])
    rig.injected["records trimmed"] += cut
    await asyncio.sleep(budget.fault)
    canary.heal()


async def duplicated_and_reordered(rig: StreamRig, canary: Canary, budget: Budget) -> None:
    stream, rng = rig.streams[SOURCE], random.Random(rig.table)
    canary.timeline.mark("fault: older ranges delivered again after newer records")
    deadline = canary.timeline.now() + budget.fault
    while canary.timeline.now() < deadline:
        sequences = stream.sequences(SHARD)
        start = rng.randrange(max(1, len(sequences) - 20))
        end = min(start + 19, len(sequences) - 1)
        rig.injected["records redelivered"] += stream.duplicate(
            SHARD, sequences[start], sequences[end]
        )
        await asyncio.sleep(0.2)
    canary.heal()


async def throttled(rig: StreamRig, canary: Canary, budget: Budget) -> None:
    stream = rig.streams[SOURCE]
    canary.timeline.mark("fault: reads and writes throttled")
    rig.proxy.faults.http = [
        HttpFault(FaultKind.THROTTLING, budget.share),
        HttpFault(FaultKind.THROUGHPUT, budget.share),
    ]
    rng = random.Random(rig.table)

    def throttle(call: int) -> None:
        if rng.random() < budget.share * 2:
            stream.throttle()  # this very call: no throttle is left queued after the heal
            rig.injected["GetRecords throttled"] += 1

    stream.before_get_records = throttle
    await asyncio.sleep(budget.fault)
    stream.before_get_records = None
    rig.proxy.faults.heal()
    canary.heal()


async def origin_held_back(rig: StreamRig, canary: Canary, budget: Budget) -> None:
    canary.timeline.mark(f"fault: the {EU} stream is held back while {AP} replicates")
    await asyncio.sleep(budget.fault)
    await rig.start_pipeline(EU)
    rig.injected["origin delivered late"] += 1
    canary.heal()


PLANS = {
    "stream-split-mid-backlog": StreamPlan(split_mid_backlog),
    "stream-expired-iterator": StreamPlan(expired_iterators),
    "stream-trimmed-data": StreamPlan(trimmed, rewrite_after_heal=True, alarm="trimmed"),
    "stream-duplicate-reorder": StreamPlan(duplicated_and_reordered),
    "stream-throttled": StreamPlan(throttled),
    "stream-origins-reorder": StreamPlan(
        origin_held_back,
        origins=(AP, EU),
        target=SOURCE,
        mode=Mode.ACTIVE_ACTIVE,
        held=(EU,),
        quiet_after_heal=True,
    ),
}
