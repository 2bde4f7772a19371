"""A Kinesis stand-in on loopback for what moto does not do: page ListShards (moto refuses a
NextToken without the stream's name, which AWS refuses with it), throttle GetRecords and
expire iterators."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

THROTTLED = {
    "__type": "ProvisionedThroughputExceededException",
    "message": "Rate exceeded for shard shardId-000000000000 in stream orders",
}
EXPIRED = {"__type": "ExpiredIteratorException", "message": "Iterator expired"}


class StubKinesis:
    """One stream of ``shards``, listed one shard a page; every shard holds one record.

    The first ``throttles`` GetRecords are refused as AWS refuses a sixth call in a second,
    the next ``expiries`` as an iterator older than 5 minutes is. ``requests`` holds
    (operation, body) of every request, in order.
    """

    def __init__(self, shards: list[str], *, throttles: int = 0, expiries: int = 0) -> None:
        self.shards = shards
        self.throttles = throttles
        self.expiries = expiries
        self.requests: list[tuple[str, dict[str, Any]]] = []

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        """The stub's endpoint URL while the block runs."""
        writers: set[asyncio.StreamWriter] = set()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.add(writer)
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                while True:
                    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                    fields = {
                        name.strip().lower(): value.strip()
                        for name, _, value in (line.partition(":") for line in head[1:] if line)
                    }
                    body = json.loads(await reader.readexactly(int(fields["content-length"])))
                    operation = fields["x-amz-target"].rsplit(".", 1)[-1]
                    self.requests.append((operation, body))
                    status, answer = self._answer(operation, body)
                    data = json.dumps(answer).encode()
                    writer.write(
                        f"HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.1\r\n"
                        f"Content-Length: {len(data)}\r\n\r\n".encode()
                        + data
                    )
                    await writer.drain()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        async with server:
            yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            for writer in writers:
                writer.close()

    def _answer(self, operation: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if operation == "ListShards":
            if "NextToken" in body and "StreamName" in body:
                refusal = {"__type": "InvalidArgumentException", "message": "NextToken and name"}
                return "400 Bad Request", refusal
            at = int(body.get("NextToken", 0))
            page: dict[str, Any] = {
                "Shards": [
                    {
                        "ShardId": self.shards[at],
                        "SequenceNumberRange": {"StartingSequenceNumber": "1"},
                    }
                ]
            }
            if at + 1 < len(self.shards):
                page["NextToken"] = str(at + 1)
            return "200 OK", page
        if operation == "GetShardIterator":
            return "200 OK", {"ShardIterator": f"iterator-{body['ShardId']}"}
        if operation == "GetRecords":
            if self.throttles:
                self.throttles -= 1
                return "400 Bad Request", THROTTLED
            if self.expiries:
                self.expiries -= 1
                return "400 Bad Request", EXPIRED
            record = {
                "SequenceNumber": "1",
                "ApproximateArrivalTimestamp": 1.5,
                "Data": "e30=",
                "PartitionKey": "k",
            }
            return "200 OK", {
                "Records": [record],
                "NextShardIterator": "next",
                "MillisBehindLatest": 0,
            }
        return "400 Bad Request", {"__type": "UnknownOperationException", "message": operation}
