"""Benchmark 5: peak memory does not grow with the backlog.

Each size drains in a fresh process (``python -m bench.memory --child N``) so one run's
heap cannot hide another's; the child reports its peak RSS (VmHWM). The backlog comes
from ``GeneratedStream``, which makes records as they are read: the stream itself holds
nothing, so what grows with the backlog would be the pipeline's own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.env import ROOT
from bench.fakes import GeneratedStream, drain, memory_pipeline
from bench.results import Goal, Result
from bench.ui import progress
from replicator.telemetry.metrics import Metrics

NAME = "5 memory"
GOAL = Goal("<=", 1.2, "x")
SMALL, LARGE = 10_000, 500_000


def status_kb(field: str, pid: int | str = "self") -> int:
    """A ``/proc/<pid>/status`` memory figure in kB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


async def child(records: int) -> dict[str, Any]:
    metrics = Metrics(source_region="us-east-1")
    stream = GeneratedStream(records)
    pipeline, checkpoints, _ = memory_pipeline(stream, table=stream.table, metrics=metrics)
    before = status_kb("VmRSS")
    started = time.perf_counter()
    finished = await drain(pipeline, checkpoints, within=60 + records / 500)
    seconds = time.perf_counter() - started
    metrics.shutdown()
    return {
        "records": records,
        "finished": finished,
        "writes": metrics.total("applied"),
        "seconds": seconds,
        "rss_before_kb": before,
        "peak_rss_kb": status_kb("VmHWM"),
    }


def measure(records: int) -> dict[str, Any]:
    """Drain ``records`` in a fresh interpreter; its report."""
    answer = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--child", str(records)],
        cwd=ROOT,
        capture_output=True,
        timeout=120 + records / 500,
        check=True,
    )
    report: dict[str, Any] = json.loads(answer.stdout.decode().strip().splitlines()[-1])
    return report


async def memory(small: int = SMALL, large: int = LARGE) -> list[Result]:
    reports = []
    with progress(f"[5] draining {small:,} then {large:,} records", total=2) as done:
        for number, records in enumerate((small, large), start=1):
            reports.append(await asyncio.to_thread(measure, records))
            done(number)
    low, high = reports
    complete = all(r["finished"] for r in reports)
    ratio = high["peak_rss_kb"] / low["peak_rss_kb"] if complete else None
    growth = [(r["peak_rss_kb"] - r["rss_before_kb"]) / 1024 for r in reports]
    return [
        Result(
            NAME,
            f"peak RSS {large:,} / {small:,} records",
            ratio,
            "x",
            GOAL,
            f"{high['peak_rss_kb'] / 1024:.0f} MiB vs {low['peak_rss_kb'] / 1024:.0f} MiB, "
            "fresh process each, generated stream",
            {"small": low, "large": high},
        ),
        Result(
            NAME,
            f"growth while draining {large:,}",
            growth[1],
            "MiB",
            None,
            f"peak minus RSS before draining ({growth[0]:.1f} MiB for {small:,})",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory")
    parser.add_argument("--child", type=int, required=True, help="drain this many records")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(child(args.child))), flush=True)


if __name__ == "__main__":
    main()
