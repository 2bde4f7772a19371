"""Candidate fixes for the hot path, tried without touching the package.

Each variant monkeypatches a copy of the code it changes in a fresh interpreter, then
runs a benchmark; variants alternate so that machine noise spreads evenly. They are
proposals for the owners of ``replicator/``, not code the service runs. Two earlier
ones (no OpenTelemetry call per record; a few workers per batch instead of a task per
key) have landed in the package, so only the open one is left here.

    python -m bench.experiments                       # benchmark 1: CPU µs per record
    python -m bench.experiments --lag 30 --rate 45    # benchmark 4 on the stub target
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.env import ROOT, backend
from bench.fakes import filled_fake_stream
from bench.lag import LOAD_SHARE, lag_under_load
from bench.overhead import drain_once, one_core
from replicator.apply.applier import TargetApplier
from replicator.pipeline import Decoded, PairPipeline
from replicator.stream.reader import Batch

# -- D: a lane takes every batch already queued in one go ------------------------------
#
# A lane applies one batch at a time, and every batch costs at least one round trip to
# the target, however small. Under steady load the reader keeps the queue full of small
# batches (each holds what arrived during one lane cycle), so the lane runs at its
# batch rate and lag is the whole queue: 4-5 cycles. Taking all queued batches at once
# (consecutive in stream order, so coalescing them together is safe) makes the batch
# grow with the backlog; the checkpoint goes to the last one's position.


class _MergingQueue:
    """What ``_lane`` reads: the next batch merged with all those already waiting."""

    def __init__(self, queue: asyncio.Queue[Decoded | None]) -> None:
        self._queue = queue
        self._ended = False

    async def get(self) -> Decoded | None:
        if self._ended:
            return None
        first = await self._queue.get()
        if first is None:
            return None
        taken = [first]
        while not self._queue.empty():
            more = self._queue.get_nowait()
            if more is None:
                self._ended = True
                break
            taken.append(more)
        if len(taken) == 1:
            return first
        last = taken[-1].batch
        sequences = [work.batch.last_sequence for work in taken if work.batch.last_sequence]
        batch = Batch(
            last.shard_id,
            [record for work in taken for record in work.batch.records],
            sequences[-1] if sequences else None,
            last.shard_ended,
        )
        changes = [change for work in taken for change in work.changes]
        return Decoded(batch, changes, [entry for work in taken for entry in work.dead])


_pipeline_lane = PairPipeline._lane


async def _lane(
    self: PairPipeline, shard_id: str, applier: TargetApplier, queue: asyncio.Queue[Any]
) -> None:
    await _pipeline_lane(self, shard_id, applier, _MergingQueue(queue))  # type: ignore[arg-type]


def patch_lane() -> None:
    PairPipeline._lane = _lane  # type: ignore[method-assign]


VARIANTS: dict[str, tuple[str, list[Callable[[], None]]]] = {
    "baseline": ("the code as it is", []),
    "D": ("lane takes all queued batches at once", [patch_lane]),
}


async def _overhead(records: int) -> dict[str, Any]:
    warm, stream = filled_fake_stream(1000), filled_fake_stream(records)
    with one_core():
        await drain_once(warm, 1000)
        wall, cpu, _, finished = await drain_once(stream, records)
    return {"figure": cpu / records * 1e6, "wall_s": wall, "ok": finished}


async def _lag(seconds: float, rate: float) -> dict[str, Any]:
    with backend(target="stub") as started:
        results = await lag_under_load(started, seconds, ceiling=rate / LOAD_SHARE)
    return {"figure": results[0].measured, "p99": results[1].measured}


def _run(variant: str, options: list[str]) -> dict[str, Any]:
    answer = subprocess.run(
        [sys.executable, "-m", "bench.experiments", "--child", variant, *options],
        cwd=ROOT,
        capture_output=True,
        timeout=900,
        check=True,
    )
    result: dict[str, Any] = json.loads(answer.stdout.decode().strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.experiments")
    parser.add_argument("--records", type=int, default=50_000, help="benchmark 1 backlog")
    parser.add_argument("--lag", type=float, help="run benchmark 4 for this many seconds")
    parser.add_argument("--rate", type=float, default=45.0, help="writes/s for --lag")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=sorted(VARIANTS))
    args = parser.parse_args()
    if args.child:
        for patch in VARIANTS[args.child][1]:
            patch()
        work = _lag(args.lag, args.rate) if args.lag else _overhead(args.records)
        print(json.dumps(asyncio.run(work)), flush=True)
        return
    options = ["--records", str(args.records)]
    if args.lag:
        options = ["--lag", str(args.lag), "--rate", str(args.rate)]
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name in VARIANTS:
            samples[name].append(_run(name, options))
    if args.lag:
        title = f"benchmark 4 variants, stub target, {args.rate:g} writes/s for {args.lag:g} s"
        columns = ("variant", "what", "lag p50 s", "lag p99 s")
    else:
        title = f"benchmark 1 variants, {args.records:,} records"
        columns = ("variant", "what", "CPU µs/record", "records per CPU-s")
    grid = Table(title=f"{title}, median of {args.rounds}")
    for column in columns:
        grid.add_column(column)
    for name, (what, _) in VARIANTS.items():
        figure = statistics.median(run["figure"] for run in samples[name])
        if args.lag:
            p99 = statistics.median(run["p99"] for run in samples[name])
            grid.add_row(name, what, f"{figure:.3f}", f"{p99:.3f}")
        else:
            grid.add_row(name, what, f"{figure:.1f}", f"{1e6 / figure:,.0f}")
    Console(width=140).print(grid)


if __name__ == "__main__":
    main()
