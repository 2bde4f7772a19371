"""``python -m bench``: run the benchmarks, print one table, write ``bench/results.json``.

    python -m bench                 # everything, full size (~25 minutes)
    python -m bench --quick         # everything, small: checks the harness in ~2 minutes
    python -m bench --only 1,6      # some of them
    python -m bench --only 13       # Kinesis vs DynamoDB Streams (~4 minutes on a quiet machine)

A benchmark that crashes is reported as an error row and the others still run; the
exit code is 1 then, and 0 otherwise: a missed goal is a finding, not a crash.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import time
import traceback
from collections.abc import Awaitable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.activeactive import active_active_cost
from bench.adaptive import default_drain, throttled_drain
from bench.drain import drain_rate
from bench.env import DEFAULT_RTT_SECONDS, Backend, backend
from bench.hotpath import profile_drain, profile_overhead
from bench.kinesis import kinesis_vs_streams
from bench.lag import lag_under_load
from bench.memory import memory
from bench.overhead import pipeline_overhead
from bench.results import Result, print_table, write_json
from bench.sdk import sdk_cost
from bench.startup import start_up
from bench.tools import backfill_rate, verify_memory
from bench.ui import console, say

RESULTS = Path(__file__).resolve().parent / "results.json"
ALL = frozenset(range(1, 14))


@dataclass(frozen=True, slots=True)
class Sizes:
    overhead_records: int = 100_000
    overhead_rounds: int = 3
    backlog: int = 20_000
    ceiling_writes: int = 5_000
    naive_records: int = 300
    lag_seconds: float = 60.0
    memory_small: int = 10_000
    memory_large: int = 500_000
    sdk_writes: int = 3_000
    profile_overhead_records: int = 20_000
    profile_drain_records: int = 3_000
    verify_small: int = 20_000
    verify_large: int = 200_000
    backfill_items: int = 4_000
    default_drain_records: int = 60_000
    throttled_records: int = 20_000
    start_rounds: int = 5
    active_writes: int = 3_000
    kinesis_changes: int = 20_000  # stub target: what the pipeline itself sustains
    kinesis_moto_changes: int = 3_000  # moto target: ties meet; moto takes ~120 writes/s


FULL = Sizes()
QUICK = Sizes(
    overhead_records=10_000,
    overhead_rounds=1,
    backlog=1_000,
    ceiling_writes=500,
    naive_records=20,
    lag_seconds=10.0,
    memory_small=2_000,
    memory_large=20_000,
    sdk_writes=300,
    profile_overhead_records=2_000,
    profile_drain_records=500,
    verify_small=2_000,
    verify_large=20_000,
    backfill_items=500,
    default_drain_records=3_000,
    throttled_records=2_000,
    start_rounds=1,
    active_writes=300,
    kinesis_changes=2_000,
    kinesis_moto_changes=400,
)


class Run:
    """Collects results; a benchmark that raises becomes an error row."""

    def __init__(self) -> None:
        self.results: list[Result] = []
        self.errors = 0

    async def step(self, name: str, work: Awaitable[list[Result]]) -> list[Result]:
        say(f"[bold]{name}[/bold]")
        started = time.perf_counter()
        try:
            found = await work
        except Exception as exc:
            self.errors += 1
            console.print(traceback.format_exc(), markup=False, highlight=False)
            found = [Result(name, "error", None, "", None, f"{type(exc).__name__}: {exc}")]
        say(f"  done in {time.perf_counter() - started:.0f} s")
        self.results.extend(found)
        return found


@contextlib.contextmanager
def maybe_backend(needed: bool, rtt: float, target: str) -> Iterator[Backend | None]:
    if not needed:
        yield None
        return
    with backend(rtt, target="stub" if target == "stub" else "moto") as started:
        yield started


async def run_all(sizes: Sizes, only: frozenset[int], rtt: float) -> Run:
    run = Run()
    if 1 in only:
        await run.step(
            "1 pipeline overhead",
            pipeline_overhead(sizes.overhead_records, rounds=sizes.overhead_rounds),
        )
    if 6 in only:
        await run.step("6 SDK cost per write", sdk_cost(sizes.sdk_writes))
    if 12 in only:
        await run.step("12 active-active write cost", active_active_cost(sizes.active_writes))
    if 5 in only:
        await run.step("5 memory", memory(sizes.memory_small, sizes.memory_large))
    unthrottled: float | None = None
    if 8 in only:
        drained = await run.step(
            "8 drain, default config", default_drain(sizes.default_drain_records, rtt=rtt)
        )
        unthrottled = drained[0].measured
    if 9 in only:
        await run.step(
            "9 throttled target",
            throttled_drain(sizes.throttled_records, rtt=rtt, unthrottled=unthrottled),
        )
    if 10 in only:
        await run.step("10 start-up", start_up(sizes.start_rounds, rtt=rtt))

    async def drain(target: Backend) -> list[Result]:
        report = await drain_rate(
            target,
            sizes.backlog,
            ceiling_writes=sizes.ceiling_writes,
            naive_records=sizes.naive_records,
        )
        return report.results

    ceiling: float | None = None
    with maybe_backend(bool(only & {2, 3, 4, 7, 13}), rtt, "moto") as moto:
        if moto is not None and only & {2, 3}:
            await run.step("2+3 drain on moto", drain(moto))
        if moto is not None and 4 in only:
            # Its own ceiling, measured just before the load: moto slows down as its
            # tables fill (140 -> 108 writes/s across one drain), so the drain's is stale.
            lagged = await run.step("4 lag under load", lag_under_load(moto, sizes.lag_seconds))
            ceiling = lagged[0].details.get("ceiling_per_second")
        if moto is not None and 7 in only:
            await run.step("7 hot path: drain", profile_drain(moto, sizes.profile_drain_records))
        if moto is not None and 13 in only:
            await run.step(
                "13 Kinesis vs Streams on moto",
                kinesis_vs_streams(moto, sizes.kinesis_moto_changes),
            )
    if 11 in only:
        await run.step("11 verify memory", verify_memory(sizes.verify_small, sizes.verify_large))
    with maybe_backend(bool(only & {2, 3, 4, 11, 13}), rtt, "stub") as stub:
        if stub is not None and 4 in only:
            # The same write rate as on moto: what the pipeline adds when the target
            # itself answers at once (moto queues bursts of conditional puts).
            await run.step(
                "4 lag under load, stub target",
                lag_under_load(stub, sizes.lag_seconds, ceiling=ceiling),
            )
        if stub is not None and only & {2, 3}:
            await run.step("2+3 drain on a stub target", drain(stub))
        if stub is not None and 11 in only:
            await run.step(
                "11 backfill rate",
                backfill_rate(stub, sizes.backfill_items, ceiling_writes=sizes.ceiling_writes),
            )
        if stub is not None and 13 in only:
            await run.step(
                "13 Kinesis vs Streams on a stub target",
                kinesis_vs_streams(stub, sizes.kinesis_changes),
            )
    if 7 in only:
        await run.step("7 hot path: overhead", profile_overhead(sizes.profile_overhead_records))
    return run


def _selection(text: str) -> frozenset[int]:
    chosen = frozenset(int(part) for part in text.split(",") if part.strip())
    if not chosen <= ALL:
        raise argparse.ArgumentTypeError(f"benchmarks are numbered 1 to {max(ALL)}, not {text!r}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the harness")
    parser.add_argument("--only", type=_selection, default=ALL, help="e.g. 1,2,6")
    parser.add_argument("--rtt", type=float, default=DEFAULT_RTT_SECONDS, help="seconds")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)  # dead letters and retries are counted, not logged
    sizes = QUICK if args.quick else FULL
    load_before = os.getloadavg()
    started = time.perf_counter()
    run = asyncio.run(run_all(sizes, args.only, args.rtt))
    seconds = time.perf_counter() - started
    print_table(run.results)
    context = {
        "sizes": asdict(sizes),
        "only": sorted(args.only),
        "rtt_seconds": args.rtt,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }
    write_json(args.output, run.results, context=context, seconds=seconds)
    say(f"wrote {args.output} in {seconds:.0f} s")
    return 1 if run.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
