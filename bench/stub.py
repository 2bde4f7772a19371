"""A stub DynamoDB endpoint that answers at once, in its own process.

Every request gets ``{}`` (what a successful PutItem returns) except DescribeTable,
which describes any table as ACTIVE with a string ``pk``, so the replicator's start-up
checks pass, and Scan of a table named ``generated-<N>``, which answers pages of N
made-up items (the same for every such table, spread over the scan's segments): a
table of any size that costs the stub no memory, for the verify memory benchmark.
Used where the server's own cost must not count: the SDK cost per write
(benchmark 6) and the round-trip-bound drain (benchmarks 2 and 3 against a target with
no capacity limit of its own, unlike moto).

    python -m bench.stub            # prints "listening 127.0.0.1:<port>"
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from typing import Any

from aiohttp import web

LOOPBACK = "127.0.0.1"
CONTENT_TYPE = "application/x-amz-json-1.0"
EMPTY = b"{}"
GENERATED = "generated-"
NOTE = "x" * 64


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
    items = []
    while number < size and len(items) < limit:
        items.append({"pk": {"S": f"k{number:09d}"}, "version": {"N": "1"}, "note": {"S": NOTE}})
        number += total
    page: dict[str, Any] = {"Items": items, "Count": len(items), "ScannedCount": len(items)}
    if number < size:
        page["LastEvaluatedKey"] = {"pk": items[-1]["pk"]}
    return json.dumps(page).encode()


async def answer(request: web.Request) -> web.Response:
    body = await request.read()
    target = request.headers.get("X-Amz-Target", "")
    if target.endswith(".DescribeTable"):
        name = str(json.loads(body or b"{}").get("TableName", "table"))
        return web.Response(body=_describe(name), content_type=CONTENT_TYPE)
    if target.endswith(".Scan"):
        return web.Response(body=_scan(json.loads(body)), content_type=CONTENT_TYPE)
    return web.Response(body=EMPTY, content_type=CONTENT_TYPE)


async def serve(port: int = 0) -> None:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, port))
    await web.SockSite(runner, sock).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"listening {LOOPBACK}:{sock.getsockname()[1]}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(serve())
