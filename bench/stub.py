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
first PutItem is announced as ``first-write <unix time>`` (benchmark 10). A PutItem asking
for ``ReturnValues`` gets its own item back as ``Attributes`` (benchmark 12).

    python -m bench.stub [--rtt 0.08] [--throttle-above 1000]   # "listening 127.0.0.1:<port>"
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import signal
import socket
import time
from typing import Any

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
    """What the stub answers: (status, body) for one request's target and body."""

    def __init__(self, throttle_above: float | None) -> None:
        self.bucket = Bucket(throttle_above) if throttle_above else None
        self.first_write_seen = False

    def answer(self, target: str, body: bytes) -> tuple[int, bytes]:
        if target.endswith(".DescribeTable"):
            return 200, _describe(str(json.loads(body or b"{}").get("TableName", "table")))
        if target.endswith(".Scan"):
            return 200, _scan(json.loads(body))
        if target.endswith(".PutItem"):
            if self.bucket is not None and not self.bucket.take():
                return 400, THROTTLED
            if not self.first_write_seen:
                self.first_write_seen = True
                print(f"first-write {time.time():.6f}", flush=True)
            if b'"ReturnValues"' in body:
                # ALL_OLD on success (active-active, benchmark 12): the item replaced, as
                # large as the one written, so the client pays for decoding it.
                return 200, json.dumps({"Attributes": json.loads(body)["Item"]}).encode()
        return 200, EMPTY


def _request(buffer: bytearray) -> tuple[str, bytes, int] | None:
    """(X-Amz-Target, body, bytes used) of the first whole request in ``buffer``."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    fields = {}
    for line in bytes(buffer[:end]).decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    start = end + 4
    length = int(fields.get("content-length", "0"))
    if len(buffer) < start + length:
        return None
    return fields.get("x-amz-target", ""), bytes(buffer[start : start + length]), start + length


def _response(status: int, body: bytes) -> bytes:
    reason = "OK" if status == 200 else "Bad Request"
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {CONTENT_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class _Connection(asyncio.Protocol):
    """One client connection; each request is answered ``rtt`` after it arrived, in order.

    A plain protocol rather than an aiohttp server: the stub stands for a target that is
    never the bottleneck, and aiohttp's server spent more CPU per request (~120 µs) than
    the replicator's client on this machine's two shared cores.
    """

    def __init__(self, stub: Stub, rtt: float) -> None:
        self._stub = stub
        self._rtt = rtt
        self._buffer = bytearray()
        self._answers: collections.deque[list[bytes]] = collections.deque()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (request := _request(self._buffer)) is not None:
            target, body, used = request
            del self._buffer[:used]
            answer: list[bytes] = []  # filled when due; answers leave in request order
            self._answers.append(answer)
            if self._rtt:
                asyncio.get_running_loop().call_later(self._rtt, self._due, answer, target, body)
            else:
                self._due(answer, target, body)

    def _due(self, answer: list[bytes], target: str, body: bytes) -> None:
        answer.append(_response(*self._stub.answer(target, body)))
        while self._answers and self._answers[0]:
            ready = self._answers.popleft()[0]
            if self._transport is not None:
                self._transport.write(ready)


async def serve(port: int = 0, *, rtt: float = 0.0, throttle_above: float | None = None) -> None:
    stub = Stub(throttle_above)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, port))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(stub, rtt), sock=sock, backlog=1024)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"listening {LOOPBACK}:{sock.getsockname()[1]}", flush=True)
    try:
        await stop.wait()
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stub")
    parser.add_argument("--rtt", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--throttle-above", type=float, default=None, help="PutItem per second")
    args = parser.parse_args()
    asyncio.run(serve(rtt=args.rtt, throttle_above=args.throttle_above))


if __name__ == "__main__":
    main()
