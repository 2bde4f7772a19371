"""One direction of one proxied connection: a delay line that applies ``Faults``.

In HTTP mode the client-to-upstream link reads whole requests, so that a faulted
request can be answered in the upstream's place (or reset, or swallowed).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Protocol

from chaos.faults import Direction, Faults, ProxyStats
from chaos.httpfaults import FaultKind, canned_response, read_request


class Traffic(Protocol):
    """What a link reads its faults from and reports its bytes to: the fault proxy."""

    faults: Faults
    stats: ProxyStats
    http: bool

    def count(self, direction: Direction, size: int) -> None: ...

CHUNK_BYTES = 64 * 1024
LINK_BUFFER_CHUNKS = 64  # in flight per link: a slow reader pushes back on the sender


class Link:
    """One direction of one connection: a bounded delay line from a reader to a writer."""

    def __init__(
        self,
        proxy: Traffic,
        direction: Direction,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        client: asyncio.StreamWriter | None = None,
    ) -> None:
        self._proxy = proxy
        self._direction = direction
        self._reader = reader
        self._writer = writer
        self._client = client  # where a request faulted by the proxy is answered (UP only)
        # (due time, chunk); an empty chunk is the end of the stream, delivered late too.
        self._line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(LINK_BUFFER_CHUNKS)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._deliver())
            await self._receive()

    async def _receive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            chunk = await self._next_chunk()
            if chunk is None:
                continue
            delay = self._proxy.faults.delay(self._direction)
            if delay and chunk:
                self._proxy.stats.injected["delayed"] += 1
            await self._line.put((loop.time() + delay, chunk))
            if not chunk:
                return

    async def _next_chunk(self) -> bytes | None:
        """The next bytes to forward: b"" at the end, None when the proxy swallowed them."""
        faults, stats = self._proxy.faults, self._proxy.stats
        if self._client is None or not self._proxy.http:
            chunk = await self._reader.read(CHUNK_BYTES)
            if chunk and faults.blackhole:
                stats.injected["blackholed"] += 1
                return None
            return chunk
        request = await read_request(self._reader)
        if request is None:
            return b""
        kind = FaultKind.BLACKHOLE if faults.blackhole else faults.pick(request.target)
        if kind is None:
            return request.raw
        stats.injected[kind.value] += 1
        if kind is FaultKind.RESET:
            _reset(self._client)
            raise ConnectionResetError("reset by the fault proxy")
        if kind is not FaultKind.BLACKHOLE:
            self._client.write(canned_response(kind))
            await self._client.drain()
        return None

    async def _deliver(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, chunk = await self._line.get()
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            if not chunk:
                if self._writer.can_write_eof() and not self._writer.is_closing():
                    self._writer.write_eof()
                return
            if self._proxy.faults.blackhole:  # an answer already on its way is swallowed too
                continue
            self._writer.write(chunk)
            await self._writer.drain()
            self._proxy.count(self._direction, len(chunk))
            if (bandwidth := self._proxy.faults.bandwidth) is not None:
                self._proxy.stats.injected["bandwidth-capped"] += 1
                await asyncio.sleep(len(chunk) / bandwidth)  # the link is busy this long


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST rather than a FIN: linger on, timeout zero, then abort."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
