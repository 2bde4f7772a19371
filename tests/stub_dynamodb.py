"""A DynamoDB stand-in on loopback for what moto does not do: check when a request was
signed against a clock of its own, and refuse chosen keys as expired.

Plain asyncio rather than aiohttp's server, which adds a ``Date`` header of the real
time to every answer: here the ``Date`` is the stub's clock, or absent when asked.
"""

from __future__ import annotations

import asyncio
import calendar
import email.utils
import json
import time
from dataclasses import dataclass, field
from types import TracebackType

# DynamoDB refuses a request signed further than this from its clock.
SIGNATURE_WINDOW_SECONDS = 300
EXPIRED_TOKEN = {
    "__type": "com.amazon.coral.service#ExpiredTokenException",
    "message": "The security token included in the request is expired",
}


def stamp(unix: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(unix))


@dataclass(frozen=True)
class Signed:
    """What the stub saw of one request: its key id, when it was signed, whether refused."""

    key_id: str
    signed_at: float
    refused: str | None


@dataclass
class StubDynamoDB:
    """Answers every request with an empty PutItem answer, unless its signature is refused.

    ``ahead``: seconds the stub's clock is ahead of the host's. ``date``: whether answers
    carry a ``Date`` header. ``expired``: key ids refused with ``ExpiredTokenException``.
    """

    ahead: float = 0.0
    date: bool = True
    expired: set[str] = field(default_factory=set)
    requests: list[Signed] = field(default_factory=list)
    endpoint: str = ""
    _server: asyncio.Server | None = None
    _connections: dict[asyncio.Task[None], asyncio.StreamWriter] = field(default_factory=dict)

    async def __aenter__(self) -> StubDynamoDB:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._connections.values():
            writer.close()  # its reader sees the end and its task returns
        await asyncio.gather(*self._connections)
        await self._server.wait_closed()

    @property
    def refused(self) -> list[str]:
        return [signed.refused for signed in self.requests if signed.refused]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                fields = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in head.split("\r\n")[1:])
                }
                await reader.readexactly(int(fields["content-length"]))
                status, body = self._answer(fields)
                now = time.time() + self.ahead
                date = f"Date: {email.utils.formatdate(now, usegmt=True)}\r\n" if self.date else ""
                writer.write(
                    f"HTTP/1.1 {status} X\r\n{date}Content-Type: application/x-amz-json-1.0\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._connections.pop(task, None)
            writer.close()

    def _answer(self, fields: dict[str, str]) -> tuple[int, bytes]:
        now = time.time() + self.ahead
        signed_at = calendar.timegm(time.strptime(fields["x-amz-date"], "%Y%m%dT%H%M%SZ"))
        key_id = fields["authorization"].split("Credential=", 1)[1].split("/", 1)[0]
        refusal = None
        if signed_at < now - SIGNATURE_WINDOW_SECONDS:
            refusal = {
                "__type": "com.amazon.coral.service#InvalidSignatureException",
                "message": f"Signature expired: {stamp(signed_at)} is now earlier than "
                f"{stamp(now - SIGNATURE_WINDOW_SECONDS)} ({stamp(now)} - 5 min.)",
            }
        elif signed_at > now + SIGNATURE_WINDOW_SECONDS:
            refusal = {
                "__type": "com.amazon.coral.service#InvalidSignatureException",
                "message": f"Signature not yet current: {stamp(signed_at)} is still later "
                f"than {stamp(now + SIGNATURE_WINDOW_SECONDS)} ({stamp(now)} + 5 min.)",
            }
        elif key_id in self.expired:
            refusal = EXPIRED_TOKEN
        self.requests.append(
            Signed(key_id, signed_at, refusal["__type"].rsplit("#", 1)[1] if refusal else None)
        )
        if refusal is not None:
            return 400, json.dumps(refusal, separators=(",", ":")).encode()
        return 200, b"{}"
