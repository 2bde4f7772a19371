"""A TCP fault proxy on loopback: what the network between regions does, on demand.

Every accepted connection is piped to one upstream through two one-way links: "up"
(client to upstream) and "down" (upstream to client). A link is a delay line: each
chunk is delivered ``delay`` seconds after it was read, in order, and later chunks do
not queue behind earlier ones' delays. So a link adds latency without capping
throughput, and a request/response pays up + down: the round trip (DESIGN §8).

``Faults`` is a mutable value read for every chunk, so a scenario can change it while
traffic flows: latency with jitter, a bandwidth cap per link, a blackhole (every byte
swallowed, no answer ever), and, when the proxy runs in HTTP mode, DynamoDB-shaped
answers to a share of the requests (``chaos.httpfaults``). Only loopback addresses are
accepted, for listening and for the upstream alike.

    async with FaultProxy(("127.0.0.1", moto_port), faults=Faults.round_trip(0.08)) as proxy:
        client = make_client(endpoint_url=proxy.url)

Also a command: ``python -m chaos.proxy --upstream 127.0.0.1:PORT --rtt 0.08`` prints
``listening 127.0.0.1:<port>`` and forwards until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import signal
import sys

from chaos.faults import Direction, Faults, ProxyStats
from chaos.httpfaults import FaultKind, HttpFault
from chaos.lifecycle import Lifecycle
from chaos.link import Link

__all__ = ["Direction", "FaultKind", "FaultProxy", "Faults", "HttpFault", "ProxyStats"]

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
DEFAULT_MAX_CONNECTIONS = 256
CONNECT_TIMEOUT_SECONDS = 5.0


def _require_loopback(host: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ValueError(f"{host!r} is not a loopback address: the fault proxy stays on loopback")


class FaultProxy(Lifecycle):
    """Forwards ``host:port`` to ``upstream``, applying ``faults`` to every byte."""

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        faults: Faults | None = None,
        host: str = LOOPBACK,
        port: int = 0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        http: bool = False,
    ) -> None:
        _require_loopback(host)
        _require_loopback(upstream[0])
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.upstream = upstream
        self.faults = faults or Faults()
        self.stats = ProxyStats()
        self.max_connections = max_connections
        self.http = http  # read whole requests, so that ``faults.http`` can answer some
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._bound_port: int | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("the proxy is not started")
        return self._bound_port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the proxy is already started")
        self._server = await asyncio.start_server(self._accept, self._host, self._port)
        self._bound_port = int(self._server.sockets[0].getsockname()[1])

    async def aclose(self) -> None:
        """Stop accepting, cut every connection, wait for them to end (idempotent)."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        connections = list(self._connections)
        for task in connections:
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        if self._closing or self.stats.active >= self.max_connections:
            self.stats.refused += 1
            client.close()
            return
        # The pipe is a task of its own so that ``aclose`` can cancel it without cancelling
        # the server's callback task (asyncio logs a cancelled one as an error).
        pipe = asyncio.create_task(self._pipe(client_reader, client))
        self._connections.add(pipe)
        self.stats.accepted += 1
        self.stats.active += 1
        try:
            await asyncio.wait({pipe})
        finally:
            pipe.cancel()  # a no-op once done; if the server itself is cancelled, it ends too
            self.stats.active -= 1
            self._connections.discard(pipe)
        if not pipe.cancelled() and (exc := pipe.exception()) is not None:
            log.warning("connection to %s:%d failed: %r", *self.upstream, exc)

    async def _pipe(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                    upstream_reader, upstream = await asyncio.open_connection(*self.upstream)
            except (OSError, TimeoutError) as exc:
                self.stats.refused += 1
                log.debug("upstream %s:%d unreachable: %s", *self.upstream, exc)
                return
            up = Link(self, Direction.UP, client_reader, upstream, client=client)
            down = Link(self, Direction.DOWN, upstream_reader, client)
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(up.run())
                    group.create_task(down.run())
            except* (OSError, asyncio.IncompleteReadError):
                # One side reset the connection: the other side is cut too, as TCP would.
                pass
        finally:
            client.close()
            if upstream is not None:
                upstream.close()

    def count(self, direction: Direction, size: int) -> None:
        """Bytes a link delivered."""
        if direction is Direction.UP:
            self.stats.bytes_up += size
        else:
            self.stats.bytes_down += size


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host, int(port)


async def _serve(args: argparse.Namespace) -> None:
    faults = (
        Faults.round_trip(args.rtt)
        if args.rtt is not None
        else Faults(up_delay=args.up_delay, down_delay=args.down_delay)
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with FaultProxy(
        args.upstream, faults=faults, port=args.port, max_connections=args.max_connections
    ) as proxy:
        print(f"listening {LOOPBACK}:{proxy.port}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chaos.proxy", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--upstream", type=_address, required=True, help="HOST:PORT on loopback")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free one)")
    parser.add_argument("--rtt", type=float, help="round trip added, seconds (half each way)")
    parser.add_argument("--up-delay", type=float, default=0.0, help="client -> upstream, seconds")
    parser.add_argument("--down-delay", type=float, default=0.0, help="upstream -> client, seconds")
    parser.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS)
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
