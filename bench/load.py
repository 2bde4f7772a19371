"""Steady writes into a source table at a fixed rate, in its own process (benchmark 4).

Open loop: write ``i`` is due at ``start + i / rate`` whatever happened to the others,
as an application's traffic would be; at most ``--in-flight`` are outstanding, and the
run is bounded by ``--seconds`` (plus a grace period) and by its write count. Prints
one JSON line with what it did.

    python -m bench.load --endpoint http://127.0.0.1:PORT --table T --rate 50 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from typing import Any

from bench.fakes import item_image
from replicator.aws.factory import Clients

REGION = "us-east-1"
GRACE_SECONDS = 15.0


async def steady_writes(
    endpoint: str, table: str, *, rate: float, seconds: float, in_flight: int
) -> dict[str, Any]:
    total = max(1, round(rate * seconds))
    clients = Clients({REGION: endpoint})
    rng = random.Random(4)
    slots = asyncio.Semaphore(in_flight)
    counts = {"writes": 0, "errors": 0, "late": 0}

    async def one(number: int) -> None:
        try:
            await client.put_item(TableName=table, Item=item_image(f"load{number:08d}", 1, rng))
            counts["writes"] += 1
        except Exception:  # counted and reported: the benchmark judges the run
            counts["errors"] += 1
        finally:
            slots.release()

    try:
        client = await clients.json("dynamodb", REGION)
        started = time.monotonic()
        try:
            async with asyncio.timeout(seconds + GRACE_SECONDS), asyncio.TaskGroup() as group:
                for number in range(total):
                    due = started + number / rate
                    if (wait := due - time.monotonic()) > 0:
                        await asyncio.sleep(wait)
                    elif wait < -0.1:
                        counts["late"] += 1
                    await slots.acquire()
                    group.create_task(one(number))
        except TimeoutError:
            counts["timed_out"] = 1
        elapsed = time.monotonic() - started
    finally:
        await clients.aclose()
    return {**counts, "seconds": elapsed, "rate": counts["writes"] / elapsed, "planned": total}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--rate", type=float, required=True, help="writes per second")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--in-flight", type=int, default=64)
    args = parser.parse_args()
    summary = asyncio.run(
        steady_writes(
            args.endpoint,
            args.table,
            rate=args.rate,
            seconds=args.seconds,
            in_flight=args.in_flight,
        )
    )
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
