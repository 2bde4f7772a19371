"""DynamoDB and DynamoDB Streams calls signed by ``replicator.aws.sigv4``, sent by ``http_pool``.

Every AWS call of the product goes through these: ``replicator run``'s target writes,
stream reads, lease, checkpoint, DLQ and heartbeat writes and start-up checks, the Lambda
handler, the tools (verify, backfill, repair, dlq) and the demo. Scans and queries page
by hand (``LastEvaluatedKey``). Measured (bench 6, 8, 10):
aiobotocore spends several times more client CPU per request, and before its first
request it imports botocore and loads the service's model, about 0.2 s of CPU: a third of
the time from the process starting to its first write. Both APIs are JSON over POST, so
what botocore adds for them (parameter validation, model-driven parsing, its own retries)
is either done here in a few lines or not wanted: our retries are jittered, bounded and
counted (``replicator.aws.retry``).

Every operation the product makes is a method of ``DynamoDB`` or ``Streams``, with
botocore's name and keyword arguments: ``mypy --strict`` catches a call to one that does
not exist (a name looked up at run time let a missing ``delete_item`` reach production).
Failures are raised as the ``ClientError`` botocore produces, so ``aws.classify`` stays
the one place that reads error codes. Requests and answers are DynamoDB's JSON as is,
binary values included (base64 text): a key read from the stream, a scan, a Lambda event
or a DLQ entry is the same text, so it names the same item.

A general-purpose async client (aiodynamo's, measured) is not used: its retry loop cost an
async generator and a task per request, and its signer redid the day's key derivation for
every request. Keys come from the standard AWS chain (``replicator.aws.credentials``).
"""

from __future__ import annotations

import contextvars
import copy
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Self

from botocore.exceptions import ClientError, NoCredentialsError
from yarl import URL

from replicator.aws.answers import Answer
from replicator.aws.classify import is_clock_skew, is_expired_token
from replicator.aws.clock import ServerClock
from replicator.aws.credentials import CredentialChain, Key
from replicator.aws.endpoints import resolve
from replicator.aws.http_pool import ConnectionPool
from replicator.aws.sigv4 import CONTENT_TYPE, KINESIS_CONTENT_TYPE, Signer

# X-Amz-Target prefixes.
DYNAMODB = "DynamoDB_20120810"
STREAMS = "DynamoDBStreams_20120810"
KINESIS = "Kinesis_20131202"
SERVICES = {"dynamodb": DYNAMODB, "dynamodbstreams": STREAMS, "kinesis": KINESIS}
# Connections idle this long are closed rather than reused: under the idle timeouts that
# forget them on the way (60 s for an ALB, squid or the Java SDK's own pool, 350 s for a
# NAT gateway), so that a request never meets a dropped one. A busy target never waits
# this long between writes; an idle one pays one new connection.
KEEPALIVE_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 5
# One encoder for every request; requests are built here and hold no cycles, and checking
# for them cost 1.7 of the 8 µs an item took to encode.
_JSON = json.JSONEncoder(separators=(",", ":"), check_circular=False)

# The check a request must pass as it is sent, set by the caller for that one call
# (``aws.guarded_send``): a fenced process (HA) paused between deciding to write and
# sending must not send.
send_guard: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "send_guard", default=None
)


class JsonClient:
    """One service (``dynamodb``, ``dynamodbstreams`` or ``kinesis``) in one region: the wire alone.

    ``endpoint``: replicator.yaml's URL for it; without one it is resolved as botocore
    would (``replicator.aws.endpoints``).

    The guard of a ``guarded`` view is called as each request is sent and aborts it by
    raising; otherwise the ``send_guard`` of the calling context is. Requests are signed
    at ``clock``'s time (shared by a process's clients: ``aws.clock``).
    """

    service: ClassVar[str]
    content_type: ClassVar[str] = CONTENT_TYPE

    def __init__(
        self,
        region: str,
        endpoint: str | None,
        *,
        credentials: CredentialChain,
        connections: int,
        agent: str | None = None,
        clock: ServerClock | None = None,
    ) -> None:
        if agent is not None and ("\r" in agent or "\n" in agent):
            raise ValueError(f"a User-Agent cannot hold a line break: {agent!r}")
        self._agent = {"User-Agent": agent} if agent else {}
        self._guard: Callable[[], None] | None = None
        self._credentials = credentials
        self._clock = clock or ServerClock()
        self._prefix = SERVICES[self.service]
        self.region = region
        resolved = resolve(self.service, region, endpoint)
        url = URL(resolved.url)
        self._pool = ConnectionPool(
            url,
            limit=connections,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            keepalive=KEEPALIVE_SECONDS,
        )
        # Signed for the Host and path the pool sends.
        self._signer = Signer(
            self._pool.host,
            resolved.signing_region,
            path=url.raw_path,
            service=resolved.signing_name,
            content_type=self.content_type,
        )

    def guarded(self, guard: Callable[[], None] | None) -> Self:
        """This client over the same connections, with every request asked of ``guard``."""
        view = copy.copy(self)
        view._guard = guard
        return view

    async def call(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        """One request; DynamoDB's answer, or its refusal raised as a ``ClientError``."""
        key = await self._credentials.key()
        if key is None:
            raise NoCredentialsError()
        body = _JSON.encode(request).encode()
        target = f"{self._prefix}.{operation}"
        offset = self._clock.offset
        status, answer_body = reply = await self._send(key, target, body, offset)
        if status == 200:
            return _json_answer(operation, answer_body)
        error = client_error(status, answer_body, operation)
        if is_clock_skew(error) and self._clock.corrected(reply.date, offset):
            # Signed again at the server's time and sent at once; a second refusal stands.
            status, answer_body = await self._send(key, target, body, self._clock.offset)
            if status == 200:
                return _json_answer(operation, answer_body)
            error = client_error(status, answer_body, operation)
        if is_expired_token(error):
            self._credentials.invalidate(key)  # the retry signs with fresh credentials
        raise error

    def _send(self, key: Key, target: str, body: bytes, offset: float) -> Awaitable[Answer]:
        headers = self._signer.headers(key, target, body, now=time.time() + offset)
        return self._pool.post(
            {**headers, **self._agent}, body, guard=self._guard or send_guard.get()
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


class DynamoDB(JsonClient):
    """The DynamoDB operations replicator makes, each with botocore's keyword arguments."""

    service = "dynamodb"

    async def describe_table(self, **request: Any) -> dict[str, Any]:
        return await self.call("DescribeTable", request)

    async def create_table(self, **request: Any) -> dict[str, Any]:
        return await self.call("CreateTable", request)

    async def update_time_to_live(self, **request: Any) -> dict[str, Any]:
        return await self.call("UpdateTimeToLive", request)

    async def get_item(self, **request: Any) -> dict[str, Any]:
        return await self.call("GetItem", request)

    async def put_item(self, **request: Any) -> dict[str, Any]:
        return await self.call("PutItem", request)

    async def update_item(self, **request: Any) -> dict[str, Any]:
        return await self.call("UpdateItem", request)

    async def delete_item(self, **request: Any) -> dict[str, Any]:
        return await self.call("DeleteItem", request)

    async def query(self, **request: Any) -> dict[str, Any]:
        """One page; the caller pages on with ``LastEvaluatedKey``."""
        return await self.call("Query", request)

    async def scan(self, **request: Any) -> dict[str, Any]:
        """One page; the caller pages on with ``LastEvaluatedKey``."""
        return await self.call("Scan", request)


class Streams(JsonClient):
    """The DynamoDB Streams operations replicator makes."""

    service = "dynamodbstreams"

    async def describe_stream(self, **request: Any) -> dict[str, Any]:
        return await self.call("DescribeStream", request)

    async def get_shard_iterator(self, **request: Any) -> dict[str, Any]:
        return await self.call("GetShardIterator", request)

    async def get_records(self, **request: Any) -> dict[str, Any]:
        return await self.call("GetRecords", request)


class Kinesis(JsonClient):
    """The Kinesis Data Streams operations replicator makes (DESIGN §4c), by StreamName."""

    service = "kinesis"
    content_type = KINESIS_CONTENT_TYPE

    async def describe_stream_summary(self, **request: Any) -> dict[str, Any]:
        return await self.call("DescribeStreamSummary", request)

    async def list_shards(self, **request: Any) -> dict[str, Any]:
        """One page; the caller pages on with ``NextToken``."""
        return await self.call("ListShards", request)

    async def get_shard_iterator(self, **request: Any) -> dict[str, Any]:
        return await self.call("GetShardIterator", request)

    async def get_records(self, **request: Any) -> dict[str, Any]:
        return await self.call("GetRecords", request)

    async def put_records(self, **request: Any) -> dict[str, Any]:
        """The lab's test bridge writes a table's changes with it (never the product)."""
        return await self.call("PutRecords", request)

    async def create_stream(self, **request: Any) -> dict[str, Any]:
        return await self.call("CreateStream", request)


def _json_answer(operation: str, body: bytes) -> dict[str, Any]:
    try:
        answer: dict[str, Any] = json.loads(body)
    except ValueError:
        # Cut short or mangled on the way (a proxy): a transport fault, not ours.
        raise ConnectionError(
            f"{operation}: a 200 answer that is not JSON: {body[:80]!r}"
        ) from None
    return answer


def client_error(status: int, body: bytes, operation: str) -> ClientError:
    """DynamoDB's JSON error body as botocore's ``ClientError`` (``HTTP<status>`` if none)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    fields: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
    code = str(fields.get("__type", f"HTTP{status}")).rsplit("#", 1)[-1]
    message = str(fields.get("message", fields.get("Message", "")))
    response: dict[str, Any] = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    if "Item" in fields:
        response["Item"] = fields["Item"]
    return ClientError(response, operation)
