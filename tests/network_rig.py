"""The network a deployment may put between replicator and DynamoDB, on loopback.

- ``ForwardProxy``: an HTTP proxy as a private subnet has one: absolute-URL requests for
  http endpoints, ``CONNECT`` tunnels for https ones, optionally wanting credentials. It
  notes every request, and it alone resolves the names in ``routes``: an endpoint named
  there is reachable through the proxy and nowhere else, so a request that bypassed it
  fails instead of passing unnoticed.
- ``tls_front``: TLS in front of a plain server (moto), with a self-signed certificate
  for 127.0.0.1 and the names given.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from yarl import URL

LOOPBACK = "127.0.0.1"
_Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def certificate(directory: Path, *names: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and ``names``: (certificate, key) files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)])
    now = datetime.datetime.now(datetime.UTC)
    alternatives: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(LOOPBACK))]
    alternatives += [x509.DNSName(name) for name in names]
    signed = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(signed.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@dataclass(frozen=True, slots=True)
class Seen:
    """One request the proxy was asked: ``target`` is a URL, or host:port for CONNECT."""

    method: str
    target: str
    authorization: str
    operation: str  # X-Amz-Target's operation, e.g. PutItem; "" for CONNECT


@dataclass
class _Served:
    """The connections a loopback server has open, closed when it stops."""

    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


class ForwardProxy:
    def __init__(
        self, routes: Mapping[str, tuple[str, int]] | None = None, *, credentials: str = ""
    ) -> None:
        """``routes``: host:port -> where it really is; ``credentials``: user:password wanted."""
        self.routes = dict(routes or {})
        self.seen: list[Seen] = []
        self._wanted = f"Basic {base64.b64encode(credentials.encode()).decode()}"
        self._credentials = credentials
        self._served = _Served()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._served.writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, target, fields = _request_head(head)
                self.seen.append(
                    Seen(
                        method,
                        target,
                        fields.get("proxy-authorization", ""),
                        fields.get("x-amz-target", "").rpartition(".")[2],
                    )
                )
                body = await reader.readexactly(int(fields.get("content-length", "0")))
                if self._credentials and fields.get("proxy-authorization") != self._wanted:
                    writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n")
                    writer.write(b"Proxy-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n")
                    continue
                if method == "CONNECT":
                    upstream = await asyncio.open_connection(*self._route(target))
                    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    await _relay((reader, writer), upstream)
                    return
                await self._forward(method, URL(target), head, body, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._served.writers.discard(writer)
            writer.close()

    async def _forward(
        self, method: str, url: URL, head: bytes, body: bytes, writer: asyncio.StreamWriter
    ) -> None:
        # One upstream connection per request, told to close: its answer ends at its EOF.
        up_reader, up_writer = await asyncio.open_connection(*self._route(url.raw_authority))
        lines = head.decode("latin-1").split("\r\n")[1:]
        kept = [line for line in lines if line and not _named(line, "proxy-", "connection")]
        request = [f"{method} {url.raw_path_qs} HTTP/1.1", *kept, "Connection: close", "", ""]
        up_writer.write("\r\n".join(request).encode("latin-1") + body)
        try:
            writer.write(await up_reader.read())
        finally:
            up_writer.close()

    def _route(self, authority: str) -> tuple[str, int]:
        if authority in self.routes:
            return self.routes[authority]
        host, _, port = authority.rpartition(":")
        return host, int(port)


def _request_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return method, target, fields


def _named(line: str, *prefixes: str) -> bool:
    return line.lower().startswith(prefixes)


async def _relay(
    one: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    other: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    try:
        await asyncio.gather(pipe(one[0], other[1]), pipe(other[0], one[1]))
    finally:
        other[1].close()


@asynccontextmanager
async def forward_proxy(
    routes: Mapping[str, tuple[str, int]] | None = None, *, credentials: str = ""
) -> AsyncIterator[tuple[ForwardProxy, int]]:
    """A running proxy and its port on 127.0.0.1."""
    proxy = ForwardProxy(routes, credentials=credentials)
    async with _serving(proxy.serve, proxy._served) as port:
        yield proxy, port


@asynccontextmanager
async def tls_front(
    upstream: tuple[str, int], cert_file: Path, key_file: Path
) -> AsyncIterator[int]:
    """TLS with the certificate given, in front of ``upstream``; yields its port."""
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert_file, key_file)
    served = _Served()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.writers.add(writer)
        try:
            await _relay((reader, writer), await asyncio.open_connection(*upstream))
        finally:
            served.writers.discard(writer)

    async with _serving(serve, served, tls=tls) as port:
        yield port


@asynccontextmanager
async def _serving(
    serve: _Handler, served: _Served, *, tls: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    tasks: set[asyncio.Task[None]] = set()

    async def owned(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await serve(reader, writer)
        except asyncio.CancelledError:
            # Stopped by the server's shutdown below. Ending quietly: asyncio (3.11) asks a
            # cancelled handler for its exception and logs the CancelledError as an error.
            pass
        finally:
            tasks.discard(task)

    server = await asyncio.start_server(owned, LOOPBACK, 0, ssl=tls)
    port: int = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
        served.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
