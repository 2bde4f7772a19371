"""DynamoDB-shaped faults for the fault proxy: what a region answers when it is unwell.

In HTTP mode the proxy reads each request whole (AWS SDKs send one request at a time per
connection, with a Content-Length) and asks ``Faults.pick`` whether to forward it or to
answer in the service's place. The canned answers are the shapes the real services send:
a JSON error with ``__type`` for throttling, transaction conflicts and 500s, an HTML
page for a 503 from the load balancer in front, a TCP reset, or silence (a blackhole).
"""

from __future__ import annotations

import asyncio
import enum
import json
from dataclasses import dataclass

__all__ = ["FaultKind", "HttpFault", "Request", "canned_response", "read_request"]

STREAMS_TARGET = "DynamoDBStreams_20120810"  # X-Amz-Target prefix of every Streams API call
MAX_BODY_BYTES = 16 * 1024 * 1024  # DynamoDB requests are far smaller; a bigger one is a bug


class FaultKind(enum.StrEnum):
    THROTTLING = "throttling"  # 400 ThrottlingException (control plane, Streams)
    THROUGHPUT = "throughput-exceeded"  # 400 ProvisionedThroughputExceededException
    LIMIT_EXCEEDED = "limit-exceeded"  # 400 LimitExceededException (Streams GetRecords)
    # 400 TransactionConflictException: an application's transaction holds the item.
    TRANSACTION_CONFLICT = "transaction-conflict"
    SERVER_ERROR = "http-500"  # 500 with a JSON body
    UNAVAILABLE = "http-503-html"  # 503 with an HTML body, as a load balancer sends it
    RESET = "connection-reset"  # the connection is reset instead of answered
    BLACKHOLE = "blackhole"  # the request is swallowed; no answer ever comes


@dataclass(frozen=True)
class HttpFault:
    """Answer ``share`` of the requests whose X-Amz-Target starts with ``only`` with ``kind``."""

    kind: FaultKind
    share: float
    only: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"share {self.share} is not between 0 and 1")


@dataclass(frozen=True)
class Request:
    raw: bytes  # head and body, forwarded as read
    target: str  # the X-Amz-Target header ("" when absent)


_JSON_ERRORS = {
    FaultKind.THROTTLING: (400, "ThrottlingException", "Rate of requests exceeds the allowed."),
    FaultKind.THROUGHPUT: (
        400,
        "ProvisionedThroughputExceededException",
        "The level of configured provisioned throughput for the table was exceeded.",
    ),
    FaultKind.LIMIT_EXCEEDED: (
        400,
        "LimitExceededException",
        "Too many concurrent GetRecords requests on this shard.",
    ),
    FaultKind.TRANSACTION_CONFLICT: (
        400,
        "TransactionConflictException",
        "Transaction is ongoing for the item",
    ),
    FaultKind.SERVER_ERROR: (500, "InternalServerError", "Internal server error"),
}
_HTML_503 = (
    b"<html><head><title>503 Service Temporarily Unavailable</title></head>"
    b"<body><center><h1>503 Service Temporarily Unavailable</h1></center></body></html>"
)
_REASONS = {400: "Bad Request", 500: "Internal Server Error", 503: "Service Unavailable"}


def canned_response(kind: FaultKind) -> bytes:
    """The full HTTP response the service would send for ``kind`` (not RESET/BLACKHOLE)."""
    if kind is FaultKind.UNAVAILABLE:
        status, content_type, body = 503, "text/html", _HTML_503
    elif kind in _JSON_ERRORS:
        status, code, message = _JSON_ERRORS[kind]
        content_type = "application/x-amz-json-1.0"
        shape = {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message}
        body = json.dumps(shape).encode()
    else:
        raise ValueError(f"{kind} is not answered with a response")
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "x-amzn-RequestId: chaos-proxy\r\n"
        "Connection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """The next whole request on a connection; None once the client closed it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length, target = 0, ""
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "x-amz-target":
            target = value.strip()
        elif name == "transfer-encoding":
            raise ValueError("chunked requests are not supported: AWS SDKs send Content-Length")
    if not 0 <= length <= MAX_BODY_BYTES:
        raise ValueError(f"Content-Length {length} is out of range")
    body = await reader.readexactly(length)
    return Request(head + body, target)
