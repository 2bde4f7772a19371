"""Kinesis-source scenarios (DESIGN §4c) over real ``replicator run`` processes.

The pair reads a Kinesis stream that the lab's bridge fills from the source table's
DynamoDB stream, delivering as Kinesis does: random shards, held-back records, duplicates,
ties, a second table's records in the same stream. The replicator reaches moto through the
fault proxies like every process scenario; the bridge, the writers and the checks go to
moto directly. Judged as the other process scenarios are (``chaos.outcome``): every key
shows its last write, nothing else reached the target.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chaos import process_scenarios as proc
from chaos.outcome import Result
from chaos.probe import Canary
from chaos.processes import ProcessRig
from chaos.scenario import Budget, Context
from replicator.demo.kinesis_delivery import Delivery
from replicator.demo.kinesis_lab import bridging, injected
from replicator.demo.kinesis_stream import ensure_stream, read_stream

SOURCE, TARGET = proc.SOURCE, proc.TARGET
STREAM_SHARDS = 3
REPLAY_MARGIN_SECONDS = 1.0  # the replay starts a little before the first write


@dataclass(frozen=True)
class KinesisPlan:
    delivery: Delivery
    schedule: proc.Schedule
    replays: bool = False  # the schedule replays from the start: the last run must re-read


class KinesisRig(ProcessRig):
    """A process rig whose pair reads a Kinesis stream the bridge fills."""

    def __init__(self, ctx: Context, name: str) -> None:
        super().__init__(ctx.endpoints, name, ctx.workdir, ctx.seed)
        self.stream = f"{self.table}-changes"
        self.started = time.time() - REPLAY_MARGIN_SECONDS
        # A rerun into the same directory appends to the scenario's log: this run's part.
        self.log_start = len(self.log_text(SOURCE))


async def kinesis_one_way(ctx: Context, name: str, plan: KinesisPlan) -> Result:
    result = Result(name, "process")
    async with KinesisRig(ctx, name) as rig:
        await rig.create_tables([SOURCE, TARGET], stream_in=[SOURCE])
        await ensure_stream(await rig.kinesis(SOURCE), rig.stream, shards=STREAM_SHARDS)
        rig.write_config(SOURCE, [TARGET], mode="one-way", kinesis_stream=rig.stream)
        async with bridging(rig.clients, SOURCE, [rig.table], rig.stream, plan.delivery) as bridge:
            rig.launch(SOURCE)
            await proc.exercise(rig, ctx, result, plan.schedule, writers=[SOURCE], checked=[TARGET])
            result.faults.update(injected(bridge))
        if plan.replays:
            result.required[
                "the run after the replay re-read what the run before it read"
            ] = await replayed(rig)
    return result


def wait_fault(label: str) -> proc.Schedule:
    """The fault period, marked: the bridge delivers this way all along (as Kinesis may),
    so the marks only bracket the stretch that recovery is timed from."""

    async def schedule(rig: ProcessRig, canary: Canary, budget: Budget) -> None:
        canary.timeline.mark(f"fault: {label}")
        await asyncio.sleep(budget.fault)
        canary.heal()

    return schedule


async def replay_from_start(rig: ProcessRig, canary: Canary, budget: Budget) -> None:
    """Stop the replicator, ``replicator replay --since`` the scenario's start, restart."""
    assert isinstance(rig, KinesisRig)
    await asyncio.sleep(budget.fault / 2)
    canary.timeline.mark("fault: stopped, replayed from the start")
    if not await rig.stop_process(SOURCE):
        raise proc.ScheduleFailed("the replicator did not drain and exit 0 before the replay")
    since = datetime.fromtimestamp(rig.started, UTC).isoformat()
    answer = await rig.cli(SOURCE, "replay", "--pair", rig.table, "--since", since)
    if answer.returncode != 0:
        raise proc.ScheduleFailed(
            f"replicator replay failed: {(answer.stdout + answer.stderr)[-500:]}"
        )
    rig.nemesis["replay"] += 1
    rig.launch(SOURCE)
    await asyncio.sleep(budget.fault / 2)
    canary.heal()


async def replayed(rig: KinesisRig) -> bool:
    """Whether the run after the replay read again what the run before it had read.

    Both stopped gracefully, so the first checkpointed all it read: without the replay the
    second reads at most the stream's other records, and with it (from before the first
    record) all of them but what it left unread at the end.
    """
    runs = summaries(rig.log_text(SOURCE)[rig.log_start :])
    if len(runs) != 2:
        return False
    in_stream = len(await read_stream(await rig.kinesis(SOURCE), rig.stream))
    first, second = (run.get("records_read", 0) for run in runs)
    return first > 0 and first + second > in_stream


def summaries(log: str) -> list[dict[str, int]]:
    """The outcome counts each ``replicator run`` logged when it stopped gracefully."""
    return [
        {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
        for line in log.splitlines()
        if "summary:" in line
    ]


def _delivery(seed: int, **options: Any) -> Delivery:
    return Delivery(seed=seed, random_shard=True, **options)


PLANS: dict[str, tuple[str, Callable[[int], KinesisPlan]]] = {
    "kinesis-reorder": (
        "Kinesis source: records on random shards, a share held back behind later ones",
        lambda seed: KinesisPlan(
            _delivery(seed, hold_share=0.3), wait_fault("records reordered across shards")
        ),
    ),
    "kinesis-duplicates": (
        "Kinesis source: records delivered twice, a window put again later",
        lambda seed: KinesisPlan(
            _delivery(seed, duplicate_share=0.3, replay_every=40, replay_window=15),
            wait_fault("records delivered again"),
        ),
    ),
    "kinesis-ties": (
        "Kinesis source: a key's changes share a timestamp (a tie reads the source item)",
        lambda seed: KinesisPlan(_delivery(seed, tie_share=0.3), wait_fault("timestamps tie")),
    ),
    "kinesis-millisecond": (
        "Kinesis source: a destination set to MILLISECOND precision, with ties",
        lambda seed: KinesisPlan(
            _delivery(seed, precision="MILLISECOND", tie_share=0.2, hold_share=0.1),
            wait_fault("millisecond timestamps, ties and held-back records"),
        ),
    ),
    "kinesis-replay-since": (
        "Kinesis source: the replicator stopped, replayed from a time, restarted",
        lambda seed: KinesisPlan(Delivery.like_kinesis(seed), replay_from_start, replays=True),
    ),
    "kinesis-kill-9": (
        "Kinesis source: the reader killed with SIGKILL twice and restarted mid-stream",
        lambda seed: KinesisPlan(Delivery.like_kinesis(seed), proc.kill_and_restart),
    ),
}
