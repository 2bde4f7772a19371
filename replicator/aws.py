"""AWS clients and the one place that classifies AWS errors.

Nothing else in replicator reads botocore error codes: callers get an exception
from ``replicator.errors`` with a ``retryable`` flag.

A ValidationException has two very different causes, told apart by its message:

- the record itself (``record_fault``: it goes to the DLQ and the pipeline moves on).
  DynamoDB then names the item: its size ("Item size has exceeded the maximum allowed
  size"), a key or index attribute of the wrong type or empty ("Type mismatch for key",
  "cannot contain an empty string value", "Missing the key"), a key over its size
  limit, or a number out of range ("Number overflow");
- the request we built (``RequestError``, a bug): an invalid or unused expression,
  attribute name or value placeholder, a parameter that fails its constraint. Every
  record would fail the same way, so dead-lettering would empty the stream into the
  DLQ; the pipeline stops loudly instead.

Only the first list is matched; anything unrecognised counts as our bug, because a bug
taken for a record fault loses data silently, while a record fault taken for a bug
stops replication loudly until it is understood. Items are not measured before they
are sent: DynamoDB's own size rule is the exact one, its refusal costs one round trip
per oversized item, and measuring every item cost ~12 us of CPU per write.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import aiohttp
from aiobotocore.session import get_session
from aiodynamo.credentials import Credentials
from aiodynamo.http.aiohttp import AIOHTTP
from aiodynamo.sign import make_default_endpoint
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from yarl import URL

from replicator.apply.limit import AUTO_CEILING
from replicator.errors import (
    AwsError,
    ExpiredIteratorError,
    RequestError,
    ResourceNotFound,
    ThrottledError,
    TrimmedDataError,
)
from replicator.http_pool import ConnectionPool
from replicator.sigv4 import Signer

THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "TooManyRequestsException",
    }
)
RETRYABLE_CODES = frozenset(
    {
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "TransactionInProgressException",
        "ExpiredTokenException",  # the next attempt signs with refreshed credentials
    }
)
# Connections idle this long are closed; writes come often enough to keep them warm.
KEEPALIVE_SECONDS = 60.0
PUT_ITEM_TARGET = "DynamoDB_20120810.PutItem"
# A local secondary index's item collection is full (10 GB): retrying cannot make room.
RECORD_FAULT_CODES = frozenset({"ItemCollectionSizeLimitExceededException"})
VALIDATION = "ValidationException"
# Lower-case fragments of the ValidationException messages that name the item (above).
ITEM_FAULT_MESSAGES = (
    "item size",
    "type mismatch",
    "empty string value",
    "may not contain an empty string",
    "missing the key",
    "size of hashkey",
    "size of rangekey",
    "number overflow",
    "magnitude larger than supported",
    "magnitude smaller than supported",
    "item collection",
)
CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailedException"
EXPIRED_TOKEN = "ExpiredTokenException"

# One encoder for every write; requests are built here and hold no cycles, and checking
# for them cost 1.7 of the 8 µs an item took to encode.
_JSON = json.JSONEncoder(separators=(",", ":"), check_circular=False)

# Retries are ours (jittered, bounded, counted); botocore's own would hide throttling.
# ``total_max_attempts`` counts the first attempt: ``max_attempts: 1`` still retried once.
_BOTO_CONFIG = BotoConfig(
    retries={"total_max_attempts": 1, "mode": "standard"},
    connect_timeout=5,
    read_timeout=20,
    max_pool_connections=256,
)


def error_code(exc: ClientError) -> str:
    code: str = exc.response.get("Error", {}).get("Code", "")
    return code


def is_conditional_check_failed(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and error_code(exc) == CONDITIONAL_CHECK_FAILED


def classify(exc: BaseException) -> AwsError:
    """Map a botocore/aiohttp failure into the replicator error tree."""
    if isinstance(exc, AwsError):
        return exc
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = f"{code}: {exc.response.get('Error', {}).get('Message', '')}".rstrip(": ")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in THROTTLING_CODES:
            return ThrottledError(message, code=code)
        if code == "ExpiredIteratorException":
            # Retrying the same iterator cannot help: the reader seeks a fresh one.
            return ExpiredIteratorError(message, code=code, retryable=False)
        if code == "TrimmedDataAccessException":
            return TrimmedDataError(message, code=code, retryable=False)
        if code == "ResourceNotFoundException":
            return ResourceNotFound(message, code=code, retryable=False)
        if code == VALIDATION and not names_the_item(message):
            return RequestError(message, code=code)
        retryable = code in RETRYABLE_CODES or status >= 500
        record_fault = code in RECORD_FAULT_CODES or code == VALIDATION
        return AwsError(message, code=code, retryable=retryable, record_fault=record_fault)
    if isinstance(exc, TimeoutError):
        return AwsError("no answer within the attempt timeout", code="Timeout", retryable=True)
    if isinstance(
        exc,
        EndpointConnectionError
        | ConnectTimeoutError
        | ReadTimeoutError
        | ConnectionClosedError
        | ConnectionError
        | TimeoutError
        | aiohttp.ClientError,
    ):
        return AwsError(f"connection failed: {exc}", code="Connection", retryable=True)
    if isinstance(exc, BotoCoreError):
        return AwsError(f"{type(exc).__name__}: {exc}", code=type(exc).__name__, retryable=False)
    raise exc


def names_the_item(message: str) -> bool:
    """Whether a ValidationException's message blames the item rather than the request."""
    lowered = message.lower()
    return any(fragment in lowered for fragment in ITEM_FAULT_MESSAGES)


def region_of(client: Any) -> str:
    """The region an aiobotocore client (or ``FastPutClient``) talks to, for log lines."""
    meta = getattr(client, "meta", None)
    return str(getattr(meta, "region_name", None) or getattr(client, "region", ""))


class FastPutClient:
    """PutItem signed by ``replicator.sigv4`` and sent over ``http_pool``, with aiobotocore's
    signature.

    Measured (bench/, SDK cost per write): aiobotocore spends several times more
    client CPU per request, and on a real DynamoDB target that CPU, not the network,
    bounds writes per core. Only aiodynamo's credential chain is used: its client's
    retry loop (ours are jittered, bounded and counted) cost an async generator and a
    task per request, and its signer redid the day's key derivation for every request.
    Failures are raised as the ``ClientError`` shape botocore produces, so ``classify``
    stays the one place that reads error codes.

    ``guard`` is asked as each request's bytes go out: the lease fence is asked before a
    write starts, but a process frozen after that (a SIGSTOP, a VM pause) and before the
    send would send it once it thaws, after another process took the lease over.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        region: str,
        endpoint: str | None,
        *,
        connections: int = AUTO_CEILING,
        agent: str | None = None,
        guard: Callable[[], None] | None = None,
    ) -> None:
        if agent is not None and ("\r" in agent or "\n" in agent):
            raise ValueError(f"a User-Agent cannot hold a line break: {agent!r}")
        self._agent = {"User-Agent": agent} if agent else {}
        self._guard = guard
        self._http = AIOHTTP(session)
        self._credentials = Credentials.auto()
        self.region = region
        self._pool = ConnectionPool(
            URL(endpoint) if endpoint else make_default_endpoint(region),
            limit=connections,
            connect_timeout=_BOTO_CONFIG.connect_timeout,
            keepalive=KEEPALIVE_SECONDS,
        )
        self._signer = Signer(self._pool.host, region)

    async def put_item(self, **request: Any) -> dict[str, Any]:
        key = await self._credentials.get_key(self._http)
        if key is None:
            raise NoCredentialsError()
        try:
            body = _JSON.encode(request).encode()
        except TypeError:
            # Binary attributes arrive from the stream as bytes; JSON wants base64.
            body = _JSON.encode(_base64_binaries(request)).encode()
        headers = self._signer.headers(key, PUT_ITEM_TARGET, body, now=time.time())
        status, answer_body = await self._pool.post(
            {**headers, **self._agent}, body, guard=self._guard
        )
        if status == 200:
            answer: dict[str, Any] = json.loads(answer_body)
            return answer
        error = _client_error(status, answer_body)
        if error_code(error) == EXPIRED_TOKEN:
            self._credentials.invalidate()  # the retry signs with fresh credentials
        raise error

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


def _client_error(status: int, body: bytes) -> ClientError:
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
    return ClientError(response, "PutItem")


# The check a request must pass as it is sent, set by the caller for that one call: a
# fenced process (HA) paused between deciding to write and sending must not send.
_send_guard: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "send_guard", default=None
)


@contextlib.contextmanager
def guarded_send(guard: Callable[[], None] | None) -> Iterator[None]:
    """Run ``guard`` (it raises to refuse) right before each request of this block is sent."""
    if guard is None:
        yield
        return
    guard()
    token = _send_guard.set(guard)
    try:
        yield
    finally:
        _send_guard.reset(token)


def _check_send_guard(**_: Any) -> None:
    # botocore's last hook before the HTTP send; returning None lets the request go.
    guard = _send_guard.get()
    if guard is not None:
        guard()


class Clients:
    """Creates aiobotocore clients per (service, region), honouring endpoint overrides.

    aiobotocore directly, not through aioboto3: importing boto3 on top cost start-up
    time and nothing here uses its resources.

    Credentials come from the standard AWS chain (environment, profile, role); none
    are ever read from replicator's config. ``agent`` is added to every request's
    User-Agent, so CloudTrail (and a test's proxy) can tell the processes of one
    deployment apart.
    """

    def __init__(
        self, endpoints: Mapping[str, str] | None = None, *, agent: str | None = None
    ) -> None:
        self._session = get_session()
        self._endpoints = dict(endpoints or {})
        self._agent = agent
        self._config = (
            _BOTO_CONFIG.merge(BotoConfig(user_agent_extra=agent)) if agent else _BOTO_CONFIG
        )
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[tuple[str, str], Any] = {}

    async def get(self, service: str, region: str) -> Any:
        """A client for ``service`` in ``region``, created once and reused."""
        key = (service, region)
        if key not in self._clients:
            client = self._session.create_client(
                service,
                region_name=region,
                endpoint_url=self._endpoints.get(region),
                config=self._config,
            )
            self._clients[key] = await self._stack.enter_async_context(client)
            self._clients[key].meta.events.register("before-send", _check_send_guard)
        return self._clients[key]

    async def put_client(
        self,
        region: str,
        *,
        connections: int = AUTO_CEILING,
        guard: Callable[[], None] | None = None,
    ) -> FastPutClient:
        """A client for replicated writes to one target in ``region``, with its own pool.

        ``connections`` is the target's concurrency ceiling: the adaptive limit keeps
        fewer writes in flight, so the pool holds as many connections as the limit
        uses. No pool is shared, so targets never cap one another. ``guard`` is called
        as each request is sent and aborts it by raising.
        """
        # The session serves the credential chain (instance and task roles) only.
        http = await self._stack.enter_async_context(
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    connect=_BOTO_CONFIG.connect_timeout, sock_read=_BOTO_CONFIG.read_timeout
                )
            )
        )
        client = FastPutClient(
            http,
            region,
            self._endpoints.get(region),
            connections=connections,
            agent=self._agent,
            guard=guard,
        )
        self._stack.push_async_callback(client.aclose)
        return client

    async def aclose(self) -> None:
        """Close every client (idempotent)."""
        self._clients.clear()
        await self._stack.aclose()


@contextlib.asynccontextmanager
async def clients(endpoints: Mapping[str, str] | None = None) -> AsyncIterator[Clients]:
    factory = Clients(endpoints)
    try:
        yield factory
    finally:
        await factory.aclose()
