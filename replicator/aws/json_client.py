"""DynamoDB and DynamoDB Streams calls signed by ``replicator.aws.sigv4``, sent by ``http_pool``.

``replicator run`` makes every call through these: target writes, stream reads, lease,
checkpoint, DLQ and heartbeat writes, the start-up checks. Measured (bench 6, 8, 10):
aiobotocore spends several times more client CPU per request, and before its first
request it imports botocore and loads the service's model, about 0.2 s of CPU: a third of
the time from the process starting to its first write. Both APIs are JSON over POST, so
what botocore adds for them (parameter validation, model-driven parsing, its own retries)
is either done here in a few lines or not wanted: our retries are jittered, bounded and
counted (``replicator.aws.retry``).

The methods keep botocore's names and keyword arguments, and failures are raised as the
``ClientError`` botocore produces, so callers work with either client and ``aws.classify``
stays the one place that reads error codes. Answers are DynamoDB's JSON as is, except
that stream records get botocore's shape back (binary values as bytes), so a change is
the same value whichever client read it.

A general-purpose async client (aiodynamo's, measured) is not used: its retry loop cost an
async generator and a task per request, and its signer redid the day's key derivation for
every request. Keys come from
the standard AWS chain (``replicator.aws.credentials``).
"""

from __future__ import annotations

import base64
import contextvars
import copy
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from botocore.exceptions import ClientError, NoCredentialsError
from yarl import URL

from replicator.aws.answers import Answer
from replicator.aws.binaries import decoded_record
from replicator.aws.classify import is_clock_skew, is_expired_token
from replicator.aws.clock import ServerClock
from replicator.aws.credentials import CredentialChain, Key
from replicator.aws.endpoints import resolve
from replicator.aws.http_pool import ConnectionPool
from replicator.aws.sigv4 import Signer

# X-Amz-Target prefixes, and the operations each client is asked for (botocore's names).
DYNAMODB = "DynamoDB_20120810"
STREAMS = "DynamoDBStreams_20120810"
OPERATIONS = {
    DYNAMODB: {
        "describe_table": "DescribeTable",
        "create_table": "CreateTable",
        "update_time_to_live": "UpdateTimeToLive",
        "get_item": "GetItem",
        "put_item": "PutItem",
        "update_item": "UpdateItem",
        "query": "Query",
        "scan": "Scan",
    },
    STREAMS: {
        "describe_stream": "DescribeStream",
        "get_shard_iterator": "GetShardIterator",
        "get_records": "GetRecords",
    },
}
SERVICES = {"dynamodb": DYNAMODB, "dynamodbstreams": STREAMS}
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
    """One service (``dynamodb`` or ``dynamodbstreams``) in one region.

    ``endpoint``: replicator.yaml's URL for it; without one it is resolved as botocore
    would (``replicator.aws.endpoints``).

    The guard of a ``guarded`` view is called as each request is sent and aborts it by
    raising; otherwise the ``send_guard`` of the calling context is. Requests are signed
    at ``clock``'s time (shared by a process's clients: ``aws.clock``).
    """

    def __init__(
        self,
        region: str,
        endpoint: str | None,
        *,
        credentials: CredentialChain,
        connections: int,
        service: str = "dynamodb",
        agent: str | None = None,
        clock: ServerClock | None = None,
    ) -> None:
        if agent is not None and ("\r" in agent or "\n" in agent):
            raise ValueError(f"a User-Agent cannot hold a line break: {agent!r}")
        self._agent = {"User-Agent": agent} if agent else {}
        self._guard: Callable[[], None] | None = None
        self._credentials = credentials
        self._clock = clock or ServerClock()
        self._prefix = SERVICES[service]
        self.region = region
        resolved = resolve(service, region, endpoint)
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
        )

    def guarded(self, guard: Callable[[], None] | None) -> JsonClient:
        """This client over the same connections, with every request asked of ``guard``."""
        view = copy.copy(self)
        view._guard = guard
        return view

    def __getattr__(self, name: str) -> Callable[..., Any]:
        operation = None if name.startswith("_") else OPERATIONS[self._prefix].get(name)
        if operation is None:
            raise AttributeError(f"{type(self).__name__} has no operation {name!r}")

        async def call(**request: Any) -> dict[str, Any]:
            return await self.call(operation, request)

        return call

    async def put_item(self, **request: Any) -> dict[str, Any]:
        # Spelled out rather than found by __getattr__: it is the per-write hot path.
        return await self.call("PutItem", request)

    async def get_records(self, **request: Any) -> dict[str, Any]:
        answer = await self.call("GetRecords", request)
        if answer.get("Records"):
            answer["Records"] = [decoded_record(record) for record in answer["Records"]]
        return answer

    async def call(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        """One request; DynamoDB's answer, or its refusal raised as a ``ClientError``."""
        key = await self._credentials.key()
        if key is None:
            raise NoCredentialsError()
        try:
            body = _JSON.encode(request).encode()
        except TypeError:
            # Binary attributes arrive from the stream as bytes; JSON wants base64.
            body = _JSON.encode(_base64_binaries(request)).encode()
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


def _base64_binaries(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _base64_binaries(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [_base64_binaries(v) for v in value]
    return value


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
