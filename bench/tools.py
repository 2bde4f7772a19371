"""Benchmark 11: the operator tools at scale.

- verify's peak memory does not grow with the table: each size is verified in a fresh
  process (``python -m bench.tools --verify-child N URL``) against the stub, whose
  ``generated-<N>`` tables are made up page by page (both sides equal, so this is the
  bucket-digest pass every verify makes); the child reports its peak RSS (VmHWM).
- backfill at 80 ms round trip writes near the target's own ceiling: the conditional-put
  ceiling at the same concurrency, measured alongside, through the same proxy to a stub
  target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from bench.backlog import RAW_CONCURRENCY, measure_ceiling, prepare, unique
from bench.drain import drain_config
from bench.env import ROOT, SOURCE_REGION, TARGET_REGION, Backend, announced, credentials
from bench.fakes import item_image
from bench.memory import status_kb
from bench.results import Goal, Result
from bench.ui import progress
from replicator.aws.factory import Clients
from replicator.config.schema import Config, HeartbeatConfig, Pair, Target, WebConfig
from replicator.models import Outcome
from replicator.tools.backfill import backfill
from replicator.tools.verify import verify

NAME = "11 operator tools"
MEMORY_GOAL = Goal("<=", 1.3, "x")
RATE_GOAL = Goal(">=", 0.85, "x")


async def verify_child(items: int, endpoint: str) -> dict[str, Any]:
    table = f"generated-{items}"
    config = Config(
        source_region=SOURCE_REGION,
        endpoints={SOURCE_REGION: endpoint, TARGET_REGION: endpoint},
        pairs=[Pair(source_table=table, targets=[Target(region=TARGET_REGION, table=table)])],
        web=WebConfig(enabled=False),
        heartbeat=HeartbeatConfig(enabled=False),
    )
    before = status_kb("VmRSS")
    started = time.perf_counter()
    report = await verify(config)
    return {
        "items": items,
        "compared": report.compared,
        "differences": len(report.differences),
        "seconds": time.perf_counter() - started,
        "rss_before_kb": before,
        "peak_rss_kb": status_kb("VmHWM"),
    }


def _verify_in_child(items: int, endpoint: str) -> dict[str, Any]:
    answer = subprocess.run(
        [sys.executable, "-m", "bench.tools", "--verify-child", str(items), endpoint],
        cwd=ROOT,
        capture_output=True,
        timeout=120 + items / 500,
        check=True,
    )
    report: dict[str, Any] = json.loads(answer.stdout.decode().strip().splitlines()[-1])
    return report


async def verify_memory(small: int, large: int) -> list[Result]:
    with credentials(), announced([sys.executable, "-m", "bench.stub"], name="stub") as port:
        endpoint = f"http://127.0.0.1:{port}"
        reports = []
        with progress(f"[11] verify over {small:,} then {large:,} items", total=2) as done:
            for number, items in enumerate((small, large), start=1):
                reports.append(await asyncio.to_thread(_verify_in_child, items, endpoint))
                done(number)
    low, high = reports
    complete = all(r["compared"] == r["items"] and not r["differences"] for r in reports)
    return [
        Result(
            NAME,
            f"verify peak RSS {large:,} / {small:,} items",
            high["peak_rss_kb"] / low["peak_rss_kb"] if complete else None,
            "x",
            MEMORY_GOAL,
            f"{high['peak_rss_kb'] / 1024:.0f} MiB vs {low['peak_rss_kb'] / 1024:.0f} MiB, "
            f"{large / high['seconds']:,.0f} items/s per table at {large:,}; fresh process each",
            {"small": low, "large": high},
        )
    ]


class _Quiet:
    def started(self, source_table: str, *, total: int | None, done: int) -> None:
        pass

    def advance(self, items: int) -> None:
        pass

    def note(self, text: str) -> None:
        pass


async def _seed(backend: Backend, table: str, items: int) -> None:
    clients = Clients({SOURCE_REGION: backend.source_endpoint})
    try:
        source = await clients.json("dynamodb", SOURCE_REGION)
        rng = random.Random(8)
        for start in range(0, items, 25):
            chunk = [item_image(f"k{n:08d}", 1, rng) for n in range(start, min(items, start + 25))]
            requests = {table: [{"PutRequest": {"Item": item}} for item in chunk]}
            await source.call("BatchWriteItem", {"RequestItems": requests})
    finally:
        await clients.aclose()


async def backfill_rate(backend: Backend, items: int, *, ceiling_writes: int) -> list[Result]:
    source, target = unique("backfill-source"), unique("backfill-target")
    await prepare(backend, source, [target])
    await _seed(backend, source, items)
    ceiling, _ = await measure_ceiling(backend, ceiling_writes, concurrency=RAW_CONCURRENCY)
    config: Config = drain_config(backend, source, target, concurrency=RAW_CONCURRENCY)
    with progress(f"[11] backfill of {items:,} items", total=1) as done:
        started = time.perf_counter()
        summary = await backfill(config, _Quiet())
        seconds = time.perf_counter() - started
        done(1)
    counts: Counter[str] = summary.outcomes
    rate = counts[Outcome.APPLIED] / seconds
    return [
        Result(
            NAME,
            f"backfill rate / conditional-put ceiling, {backend.rtt * 1000:.0f} ms RTT",
            rate / ceiling if summary.scanned == items else None,
            "x",
            RATE_GOAL,
            f"{rate:,.0f} vs {ceiling:,.0f} writes/s at concurrency {RAW_CONCURRENCY}, "
            f"{backend.target} target, {items:,} items",
            {"seconds": seconds, "scanned": summary.scanned, "outcomes": dict(counts)},
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tools")
    parser.add_argument("--verify-child", type=int, required=True, help="items to verify")
    parser.add_argument("endpoint", help="the stub's URL")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(verify_child(args.verify_child, args.endpoint))), flush=True)


if __name__ == "__main__":
    main()
