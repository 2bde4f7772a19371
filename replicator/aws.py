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

import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from replicator.apply.limit import AUTO_CEILING
from replicator.credentials import CredentialChain
from replicator.errors import (
    AwsError,
    ExpiredIteratorError,
    RequestError,
    ResourceNotFound,
    ThrottledError,
    TrimmedDataError,
)
from replicator.json_client import CONNECT_TIMEOUT_SECONDS, JsonClient, send_guard

if TYPE_CHECKING:
    from botocore.config import Config as BotoConfig

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
READ_TIMEOUT_SECONDS = 20
# The pool of each service's client in a region (stream reads, control-table writes).
POOL_CONNECTIONS = 256
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


def boto_config(agent: str | None) -> BotoConfig:
    """aiobotocore's settings; built on first use: botocore.config alone cost 40 ms to import.

    Retries are ours (jittered, bounded, counted); botocore's own would hide throttling.
    ``total_max_attempts`` counts the first attempt: ``max_attempts: 1`` still retried once.
    """
    from botocore.config import Config

    return Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        max_pool_connections=POOL_CONNECTIONS,
        user_agent_extra=agent,
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
        | ConnectionError,
    ) or _is_aiohttp_error(exc):
        return AwsError(f"connection failed: {exc}", code="Connection", retryable=True)
    if isinstance(exc, BotoCoreError):
        return AwsError(f"{type(exc).__name__}: {exc}", code=type(exc).__name__, retryable=False)
    raise exc


def _is_aiohttp_error(exc: BaseException) -> bool:
    # Only the tools (aiobotocore) and the dashboard load aiohttp: importing it here cost
    # ``replicator run`` 50 ms of start-up, and unloaded, none of its errors can exist.
    aiohttp = sys.modules.get("aiohttp")
    return aiohttp is not None and isinstance(exc, aiohttp.ClientError)


def names_the_item(message: str) -> bool:
    """Whether a ValidationException's message blames the item rather than the request."""
    lowered = message.lower()
    return any(fragment in lowered for fragment in ITEM_FAULT_MESSAGES)


def region_of(client: Any) -> str:
    """The region an aiobotocore client (or ``JsonClient``) talks to, for log lines."""
    meta = getattr(client, "meta", None)
    return str(getattr(meta, "region_name", None) or getattr(client, "region", ""))


@contextlib.contextmanager
def guarded_send(guard: Callable[[], None] | None) -> Iterator[None]:
    """Run ``guard`` (it raises to refuse) right before each request of this block is sent."""
    if guard is None:
        yield
        return
    guard()
    token = send_guard.set(guard)
    try:
        yield
    finally:
        send_guard.reset(token)


def _check_send_guard(**_: Any) -> None:
    # botocore's last hook before the HTTP send; returning None lets the request go.
    guard = send_guard.get()
    if guard is not None:
        guard()


class Clients:
    """Creates clients per (service, region), honouring endpoint overrides.

    ``json`` and ``put_client`` are the lean clients ``replicator run`` uses
    (``replicator.json_client``); ``get`` gives aiobotocore's, for the tools that page
    through tables. aiobotocore directly, not through aioboto3: importing boto3 on top
    cost start-up time and nothing here uses its resources; it is imported on first use.

    Credentials come from the standard AWS chain (environment, profile, role); none
    are ever read from replicator's config. ``agent`` is added to every request's
    User-Agent, so CloudTrail (and a test's proxy) can tell the processes of one
    deployment apart.
    """

    def __init__(
        self, endpoints: Mapping[str, str] | None = None, *, agent: str | None = None
    ) -> None:
        self._endpoints = dict(endpoints or {})
        self._agent = agent
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[tuple[str, str], Any] = {}
        self._json: dict[tuple[str, str], JsonClient] = {}
        self._targets: dict[tuple[str, str], JsonClient] = {}
        self._session: Any = None
        self._credentials: CredentialChain | None = None

    async def get(self, service: str, region: str) -> Any:
        """An aiobotocore client for ``service`` in ``region``, created once and reused."""
        key = (service, region)
        if key not in self._clients:
            if self._session is None:
                from aiobotocore.session import get_session

                self._session = get_session()
            client = self._session.create_client(
                service,
                region_name=region,
                endpoint_url=self._endpoints.get(region),
                config=boto_config(self._agent),
            )
            self._clients[key] = await self._stack.enter_async_context(client)
            self._clients[key].meta.events.register("before-send", _check_send_guard)
        return self._clients[key]

    async def json(self, service: str, region: str) -> JsonClient:
        """A lean client for ``service`` in ``region``, created once and reused."""
        key = (service, region)
        if key not in self._json:
            self._json[key] = await self._json_client(region, POOL_CONNECTIONS, service=service)
        return self._json[key]

    async def put_client(
        self,
        region: str,
        table: str = "",
        *,
        connections: int = AUTO_CEILING,
        guard: Callable[[], None] | None = None,
    ) -> JsonClient:
        """A client for replicated writes to ``table`` in ``region``, over that table's pool.

        The pool is created once per target table, sized by the first caller: the start-up
        check and every tenure's writes share its connections, so the first write finds
        the check's open. ``connections`` is the target's concurrency ceiling (the adaptive
        limit keeps fewer writes in flight). No pool is shared between targets, so they
        never cap one another. ``guard`` is called as each request of this client is sent
        and aborts it by raising.
        """
        key = (region, table)
        if key not in self._targets:
            self._targets[key] = await self._json_client(region, connections)
        return self._targets[key].guarded(guard)

    async def _json_client(
        self,
        region: str,
        connections: int,
        *,
        service: str = "dynamodb",
    ) -> JsonClient:
        if self._credentials is None:
            self._credentials = CredentialChain()
        client = JsonClient(
            region,
            self._endpoints.get(region),
            credentials=self._credentials,
            connections=connections,
            service=service,
            agent=self._agent,
        )
        self._stack.push_async_callback(client.aclose)
        return client

    async def aclose(self) -> None:
        """Close every client (idempotent)."""
        self._clients.clear()
        self._json.clear()
        self._targets.clear()
        await self._stack.aclose()


@contextlib.asynccontextmanager
async def clients(endpoints: Mapping[str, str] | None = None) -> AsyncIterator[Clients]:
    factory = Clients(endpoints)
    try:
        yield factory
    finally:
        await factory.aclose()
