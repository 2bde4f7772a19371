"""The write path's keep-alive connections against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from yarl import URL

from replicator.aws.classify import classify
from replicator.aws.factory import Clients
from replicator.aws.http_pool import ConnectionFailed, ConnectionPool
from replicator.demo.embedded import free_port
from replicator.errors import ConfigError
from tests.network_rig import certificate

pytestmark = pytest.mark.timeout(30)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Server:
    """An aiohttp server whose answer is ``handler``; it notes each request's connection."""

    def __init__(self) -> None:
        self.handler: Handler = self.empty
        self.connections: list[object] = []

    @property
    def opened(self) -> int:
        """Connections the requests came on."""
        return len(set(map(id, self.connections)))

    async def empty(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"{}")

    async def answer(self, request: web.Request) -> web.StreamResponse:
        self.connections.append(request.transport)
        return await self.handler(request)


@pytest.fixture
async def stub() -> AsyncIterator[tuple[Server, URL]]:
    """A ``Server`` on loopback, and its URL."""
    server = Server()
    app = web.Application()
    app.router.add_post("/", server.answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield server, URL(f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


@pytest.fixture
async def served(stub: tuple[Server, URL]) -> AsyncIterator[tuple[Server, ConnectionPool]]:
    server, url = stub
    pool = ConnectionPool(url, limit=8, connect_timeout=5, keepalive=60)
    try:
        yield server, pool
    finally:
        await pool.aclose()


async def test_writes_one_after_another_share_one_connection(
    served: tuple[Server, ConnectionPool],
) -> None:
    server, pool = served
    for _ in range(20):
        assert await pool.post({"X-Amz-Target": "t"}, b"{}") == (200, b"{}")
    assert len(server.connections) == 20
    assert server.opened == 1


async def test_a_connection_the_server_closes_is_replaced(
    served: tuple[Server, ConnectionPool],
) -> None:
    server, pool = served

    async def closing(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"{}", headers={"Connection": "close"})

    server.handler = closing
    for _ in range(3):
        assert await pool.post({}, b"{}") == (200, b"{}")
    assert server.opened == 3


async def test_an_abandoned_request_never_hands_its_late_answer_to_the_next(
    served: tuple[Server, ConnectionPool],
) -> None:
    server, pool = served
    release = asyncio.Event()

    async def numbered(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if body == b"first":
            await release.wait()
        return web.Response(body=body)

    server.handler = numbered
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await pool.post({}, b"first")
    release.set()
    assert await pool.post({}, b"second") == (200, b"second")


async def test_a_chunked_answer_is_read_whole(served: tuple[Server, ConnectionPool]) -> None:
    server, pool = served

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=400)
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b'{"__type":', b'"Throttling', b'Exception"}'):
            await response.write(part)
        await response.write_eof()
        return response

    server.handler = chunked
    assert await pool.post({}, b"{}") == (400, b'{"__type":"ThrottlingException"}')
    assert await pool.post({}, b"{}") == (400, b'{"__type":"ThrottlingException"}')
    assert server.opened == 1


async def test_a_server_that_hangs_up_is_a_retryable_failure(
    served: tuple[Server, ConnectionPool],
) -> None:
    server, pool = served

    async def hang_up(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        raise asyncio.CancelledError

    server.handler = hang_up
    with pytest.raises(ConnectionFailed) as raised:
        await pool.post({}, b"{}")
    assert classify(raised.value).retryable
    server.handler = server.empty
    assert await pool.post({}, b"{}") == (200, b"{}")


async def test_an_endpoint_without_a_host_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        ConnectionPool(URL("ftp://example.com"), limit=1, connect_timeout=1, keepalive=1)


async def test_an_https_endpoint_is_spoken_to_over_tls_verified_by_aws_ca_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert_file, key_file = certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)
    app = web.Application()
    app.router.add_post("/", Server().empty)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_tls).start()
    endpoint = URL(f"https://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(cert_file))
    trusting = ConnectionPool(endpoint, limit=2, connect_timeout=5, keepalive=60)
    monkeypatch.delenv("AWS_CA_BUNDLE")
    default = ConnectionPool(endpoint, limit=2, connect_timeout=5, keepalive=60)
    try:
        assert await trusting.post({}, b"{}") == (200, b"{}")
        with pytest.raises(ConfigError, match="CA that signed it") as raised:
            await default.post({}, b"{}")  # a certificate no CA the system knows signed
        assert f"https://127.0.0.1:{port}" in str(raised.value)
    finally:
        await trusting.aclose()
        await default.aclose()
        await runner.cleanup()


async def test_answers_are_asked_for_uncompressed(served: tuple[Server, ConnectionPool]) -> None:
    server, pool = served
    encodings: list[str | None] = []

    async def noting(request: web.Request) -> web.StreamResponse:
        encodings.append(request.headers.get("Accept-Encoding"))
        return await server.empty(request)

    server.handler = noting
    await pool.post({}, b"{}")
    assert encodings == ["identity"]


async def test_an_answer_whose_crc32_does_not_match_is_a_retryable_fault(
    served: tuple[Server, ConnectionPool],
) -> None:
    server, pool = served
    body = b'{"Attributes":{}}'
    crc = [zlib.crc32(body) ^ 1, zlib.crc32(body)]  # damaged on the way, then intact

    async def checksummed(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, headers={"x-amz-crc32": str(crc.pop(0))})

    server.handler = checksummed
    with pytest.raises(ConnectionFailed, match="x-amz-crc32") as raised:
        await pool.post({}, b"{}")
    assert classify(raised.value).retryable
    assert await pool.post({}, b"{}") == (200, body)
    assert server.opened == 2  # the damaged answer's connection was not trusted again


async def test_a_connection_idle_past_keepalive_is_replaced_not_reused(
    stub: tuple[Server, URL],
) -> None:
    server, url = stub
    now = [0.0]
    pool = ConnectionPool(url, limit=8, connect_timeout=5, keepalive=30, clock=lambda: now[0])
    try:
        await pool.post({}, b"{}")
        now[0] += 29  # within the bound: the same connection
        await pool.post({}, b"{}")
        now[0] += 31  # a NAT may have forgotten it: a new one
        await pool.post({}, b"{}")
        assert server.opened == 2
    finally:
        await pool.aclose()


async def test_a_kept_connection_forgotten_while_idle_is_replaced_at_once(
    stub: tuple[Server, URL],
) -> None:
    server, url = stub
    clients = Clients({"us-east-1": str(url)})
    try:
        target = await clients.put_client("us-east-1", "t")
        await target.put_item(TableName="t", Item={"pk": {"S": "first"}})
        forgotten = set(map(id, server.connections))

        async def forgetting(request: web.Request) -> web.StreamResponse:
            # A NAT that dropped the idle connection: the request meets a reset, no answer.
            if id(request.transport) in forgotten:
                assert request.transport is not None
                request.transport.abort()
                raise asyncio.CancelledError
            return await server.empty(request)

        server.handler = forgetting
        # One call, no failure for a retry policy to wait out: resent on a new connection.
        assert await target.put_item(TableName="t", Item={"pk": {"S": "second"}}) == {}
        assert (len(server.connections), server.opened) == (3, 2)
    finally:
        await clients.aclose()
