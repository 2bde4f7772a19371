"""DynamoDB and DynamoDB Streams calls signed by ``replicator.sigv4``, sent over aiohttp.

``replicator run`` makes every call through these: target writes, stream reads, lease,
checkpoint, DLQ and heartbeat writes, the start-up checks. Measured (bench 6, 8, 10):
aiobotocore spends several times more client CPU per request, and before its first
request it imports botocore and loads the service's model, about 0.2 s of CPU: a third of
the time from the process starting to its first write. Both APIs are JSON over POST, so
what botocore adds for them (parameter validation, model-driven parsing, its own retries)
is either done here in a few lines or not wanted: our retries are jittered, bounded and
counted (``replicator.retry``).

The methods keep botocore's names and keyword arguments, and failures are raised as the
``ClientError`` botocore produces, so callers work with either client and ``aws.classify``
stays the one place that reads error codes. Answers are DynamoDB's JSON as is, except
that stream records get botocore's shape back (binary values as bytes), so a change is
the same value whichever client read it.

Only aiodynamo's credential chain is used: its client's retry loop cost an async
generator and a task per request, and its signer redid the day's key derivation for
every request.
"""

from __future__ import annotations

import base64
import contextvars
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiodynamo.credentials import Credentials
from aiodynamo.http.aiohttp import AIOHTTP
from aiodynamo.sign import make_default_endpoint
from botocore.exceptions import ClientError, NoCredentialsError
from yarl import URL

from replicator.lambda_event import decoded_record
from replicator.sigv4 import Signer

EXPIRED_TOKEN = "ExpiredTokenException"
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

# The check a request must pass as it is sent, set by the caller for that one call
# (``aws.guarded_send``): a fenced process (HA) paused between deciding to write and
# sending must not send.
send_guard: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "send_guard", default=None
)


class JsonClient:
    """One service (``dynamodb`` or ``dynamodbstreams``) in one region.

    ``guard``, if given, is called as each request is sent and aborts it by raising;
    otherwise the ``send_guard`` of the calling context is.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        region: str,
        endpoint: str | None,
        *,
        credentials: Credentials,
        service: str = "dynamodb",
        agent: str | None = None,
        guard: Callable[[], None] | None = None,
    ) -> None:
        self._session = session
        self._agent = {"User-Agent": agent} if agent else {}
        self._guard = guard
        self._http = AIOHTTP(session)
        self._credentials = credentials
        self._prefix = SERVICES[service]
        self.region = region
        self._endpoint = URL(endpoint) if endpoint else default_endpoint(service, region)
        host = self._endpoint.host or ""
        if not self._endpoint.is_default_port():
            host = f"{host}:{self._endpoint.port}"
        self._signer = Signer(host, region)

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
        key = await self._credentials.get_key(self._http)
        if key is None:
            raise NoCredentialsError()
        try:
            body = json.dumps(request, separators=(",", ":")).encode()
        except TypeError:
            # Binary attributes arrive from the stream as bytes; JSON wants base64.
            body = json.dumps(_base64_binaries(request), separators=(",", ":")).encode()
        target = f"{self._prefix}.{operation}"
        headers = self._signer.headers(key, target, body, now=time.time())
        guard = self._guard or send_guard.get()
        data = body if guard is None else _GuardedBody(body, guard)
        async with self._session.post(
            self._endpoint, data=data, headers={**headers, **self._agent}
        ) as response:
            status, answer_body = response.status, await response.read()
        if status == 200:
            answer: dict[str, Any] = json.loads(answer_body)
            return answer
        error = client_error(status, answer_body, operation)
        if error.response["Error"]["Code"] == EXPIRED_TOKEN:
            self._credentials.invalidate()  # the retry signs with fresh credentials
        raise error


def default_endpoint(service: str, region: str) -> URL:
    endpoint = make_default_endpoint(region)
    if service == "dynamodbstreams":
        return endpoint.with_host(f"streams.{endpoint.host}")
    return endpoint


class _GuardedBody(aiohttp.BytesPayload):
    """A request body that calls ``guard`` just before its bytes go to the socket.

    The lease fence is asked before a write starts, but a process frozen after that (a
    SIGSTOP, a VM pause) and before the send would send it once it thaws, after another
    process took the lease over. aiohttp writes headers and body together here, with no
    await between the guard and the socket: a guard that raises aborts the request unsent.
    """

    def __init__(self, value: bytes, guard: Callable[[], None]) -> None:
        super().__init__(value)
        self._guard = guard

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        self._guard()
        await super().write_with_length(writer, content_length)


def _base64_binaries(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _base64_binaries(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [_base64_binaries(v) for v in value]
    return value


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
