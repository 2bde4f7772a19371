"""An HTTP proxy on loopback that notes every AWS request it forwards: when, who, what.

"Who" is the process's name in the User-Agent (``replicator-instance/<owner>``), so one
proxy per region tells the processes of a deployment apart while they share one config.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
from aiohttp import web

HOP_BY_HOP = frozenset({"connection", "content-length", "transfer-encoding", "keep-alive"})


@dataclass(frozen=True, slots=True)
class Request:
    at: float  # time.monotonic() on arrival
    agent: str
    operation: str  # e.g. GetRecords, PutItem
    table: str
    partition: str  # the item's pk for a write to the control table
    connection: int  # which of the proxy's client connections it came on


class CountingProxy:
    def __init__(self, upstream: str, *, hold: Mapping[str, float] | None = None) -> None:
        """``hold``: seconds an operation waits before it is forwarded (a far region)."""
        self.upstream = upstream.rstrip("/")
        self.requests: list[Request] = []
        self.hold = dict(hold or {})

    def by(self, pid: int, *, since: float = 0.0) -> list[Request]:
        """Requests sent by the ``replicator run`` process ``pid`` arriving after ``since``."""
        marker = f":{pid}:"
        return [r for r in self.requests if marker in r.agent and r.at > since]

    async def forward(self, request: web.Request, session: aiohttp.ClientSession) -> web.Response:
        body = await request.read()
        noted = _describe(request, body)
        self.requests.append(noted)
        await asyncio.sleep(self.hold.get(noted.operation, 0.0))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as answer:
            payload = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(status=answer.status, body=payload, headers=kept)


def _describe(request: web.Request, body: bytes) -> Request:
    operation = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
    try:
        document = json.loads(body) if body else {}
    except ValueError:
        document = {}
    item = document.get("Item") or document.get("Key") or {}
    return Request(
        at=time.monotonic(),
        agent=request.headers.get("User-Agent", ""),
        operation=operation,
        table=str(document.get("TableName", "")),
        partition=str(item.get("pk", {}).get("S", "")) if isinstance(item, dict) else "",
        connection=id(request.transport),
    )


@asynccontextmanager
async def counting_proxy(
    upstream: str, *, hold: Mapping[str, float] | None = None
) -> AsyncIterator[tuple[CountingProxy, str]]:
    """A running proxy to ``upstream`` and its URL."""
    proxy = CountingProxy(upstream, hold=hold)
    async with aiohttp.ClientSession(auto_decompress=False) as session:

        async def forward(request: web.Request) -> web.Response:
            return await proxy.forward(request, session)

        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        try:
            yield proxy, f"http://{host}:{port}"
        finally:
            await runner.cleanup()
