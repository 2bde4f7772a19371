"""An HTTP endpoint in front of a moto server that answers a share of requests with faults.

What a region under stress answers, at the HTTP level: DynamoDB throttling (JSON 400),
an internal error (JSON 500), a load balancer's HTML 503, and a connection closed
without an answer. Everything else is forwarded to moto unchanged. Seeded, so a
failing run can be repeated; loopback only.
"""

from __future__ import annotations

import collections
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web

from replicator.demo.embedded import free_port

JSON = "application/x-amz-json-1.0"


def _json_error(status: int, code: str) -> web.Response:
    body = f'{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"injected"}}'
    return web.Response(status=status, text=body, content_type=JSON)


def _html_503() -> web.Response:
    return web.Response(
        status=503,
        text="<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>",
        content_type="text/html",
    )


def _dropped(request: web.Request) -> web.Response:
    assert request.transport is not None
    request.transport.close()  # the client sees the connection end without an answer
    return web.Response(status=500)


FAULTS: dict[str, Callable[[web.Request], web.Response]] = {
    "throttling": lambda _: _json_error(400, "ThrottlingException"),
    "throughput": lambda _: _json_error(400, "ProvisionedThroughputExceededException"),
    "internal": lambda _: _json_error(500, "InternalServerError"),
    "html-503": lambda _: _html_503(),
    "dropped": _dropped,
}


class FaultyEndpoint:
    """Forwards to ``upstream``; each request is faulted with probability ``rate``."""

    def __init__(self, upstream: str, *, rate: float, seed: int) -> None:
        self.upstream = upstream
        self.rate = rate
        self.injected: collections.Counter[str] = collections.Counter()
        self._rng = random.Random(seed)
        self._session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self._rng.random() < self.rate:
            fault = self._rng.choice(sorted(FAULTS))
            self.injected[fault] += 1
            return FAULTS[fault](request)
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with self._session.post(self.upstream, data=body, headers=headers) as answer:
            return web.Response(
                status=answer.status,
                body=await answer.read(),
                headers={"Content-Type": answer.headers.get("Content-Type", JSON)},
            )

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        """Serve on a free loopback port; yields the endpoint URL."""
        app = web.Application()
        app.router.add_post("/", self.handle)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        port = free_port()
        async with aiohttp.ClientSession() as self._session:
            await web.TCPSite(runner, "127.0.0.1", port).start()
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                await runner.cleanup()
