"""A stub DynamoDB endpoint that answers at once (or after ``--rtt``), in its own process.

Every request gets ``{}`` (what a successful PutItem returns) except DescribeTable,
which describes any table as ACTIVE with a string ``pk``, so the replicator's start-up
checks pass, and Scan of a table named ``generated-<N>``, which answers pages of N
made-up items (the same for every such table, spread over the scan's segments): a
table of any size that costs the stub no memory, for the verify memory benchmark.
Used where the server's own cost must not count: the SDK cost per write
(benchmark 6) and the round-trip-bound drain (benchmarks 2 and 3 against a target with
no capacity limit of its own, unlike moto).

``--rtt`` answers every request that much later (a cross-region round trip without the
proxy's CPU); ``--throttle-above`` refuses PutItem beyond that many per second with
ProvisionedThroughputExceededException, as a provisioned table does (benchmark 9). The
first PutItem is announced as ``first-write <unix time>`` (benchmark 10).

    python -m bench.stub [--rtt 0.08] [--throttle-above 1000]   # "listening 127.0.0.1:<port>"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import time
from typing import Any

from aiohttp import web

LOOPBACK = "127.0.0.1"
CONTENT_TYPE = "application/x-amz-json-1.0"
EMPTY = b"{}"
GENERATED = "generated-"
NOTE = "x" * 64
THROTTLED = json.dumps(
    {
        "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        "message": "The level of configured provisioned throughput for the table was exceeded.",
    }
).encode()
BURST_SECONDS = 0.1  # of the allowed rate a quiet table may take at once


class Bucket:
    """Token bucket: ``rate`` a second, up to BURST_SECONDS of it saved."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate * BURST_SECONDS)
        self.tokens = self.capacity
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def _describe(name: str) -> bytes:
    table = {
        "TableName": name,
        "TableStatus": "ACTIVE",
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
    }
    return json.dumps({"Table": table}).encode()


def _scan(request: dict[str, Any]) -> bytes:
    name = str(request.get("TableName", ""))
    size = int(name.rsplit("-", 1)[1]) if name.startswith(GENERATED) else 0
    segment, total = int(request.get("Segment", 0)), int(request.get("TotalSegments", 1))
    start = request.get("ExclusiveStartKey")
    number = int(start["pk"]["S"][1:]) + total if start else segment
    limit = int(request.get("Limit", 1000))
    items: list[dict[str, Any]] = []
    while number < size and len(items) < limit:
        items.append({"pk": {"S": f"k{number:09d}"}, "version": {"N": "1"}, "note": {"S": NOTE}})
        number += total
    page: dict[str, Any] = {"Items": items, "Count": len(items), "ScannedCount": len(items)}
    if number < size:
        page["LastEvaluatedKey"] = {"pk": items[-1]["pk"]}
    return json.dumps(page).encode()




class Stub:
    def __init__(self, rtt: float, throttle_above: float | None) -> None:
        self.rtt = rtt
        self.bucket = Bucket(throttle_above) if throttle_above else None
        self.first_write_seen = False

    async def answer(self, request: web.Request) -> web.Response:
        body = await request.read()
        target = request.headers.get("X-Amz-Target", "")
        if self.rtt:
            await asyncio.sleep(self.rtt)
        if target.endswith(".DescribeTable"):
            name = str(json.loads(body or b"{}").get("TableName", "table"))
            return web.Response(body=_describe(name), content_type=CONTENT_TYPE)
        if target.endswith(".Scan"):
            return web.Response(body=_scan(json.loads(body)), content_type=CONTENT_TYPE)
        if target.endswith(".PutItem"):
            if self.bucket is not None and not self.bucket.take():
                return web.Response(status=400, body=THROTTLED, content_type=CONTENT_TYPE)
            if not self.first_write_seen:
                self.first_write_seen = True
                print(f"first-write {time.time():.6f}", flush=True)
        return web.Response(body=EMPTY, content_type=CONTENT_TYPE)


async def serve(port: int = 0, *, rtt: float = 0.0, throttle_above: float | None = None) -> None:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", Stub(rtt, throttle_above).answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, port))
    await web.SockSite(runner, sock, backlog=1024).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"listening {LOOPBACK}:{sock.getsockname()[1]}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stub")
    parser.add_argument("--rtt", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--throttle-above", type=float, default=None, help="PutItem per second")
    args = parser.parse_args()
    asyncio.run(serve(rtt=args.rtt, throttle_above=args.throttle_above))


if __name__ == "__main__":
    main()
