"""AWS clients and the one place that classifies AWS errors.

Nothing else in replicator reads botocore error codes: callers get an exception
from ``replicator.errors`` with a ``retryable`` flag.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aioboto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from replicator.errors import (
    AwsError,
    ExpiredIteratorError,
    ResourceNotFound,
    ThrottledError,
    TrimmedDataError,
)

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
        "ItemCollectionSizeLimitExceededException",
    }
)
RECORD_FAULT_CODES = frozenset({"ValidationException", "SerializationException"})
CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailedException"

# Retries are ours (jittered, bounded, counted); botocore's own would hide throttling.
_BOTO_CONFIG = BotoConfig(
    retries={"max_attempts": 1, "mode": "standard"},
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
            return ExpiredIteratorError(message, code=code, retryable=True)
        if code == "TrimmedDataAccessException":
            return TrimmedDataError(message, code=code, retryable=False)
        if code == "ResourceNotFoundException":
            return ResourceNotFound(message, code=code, retryable=False)
        retryable = code in RETRYABLE_CODES or status >= 500
        record_fault = code in RECORD_FAULT_CODES
        return AwsError(message, code=code, retryable=retryable, record_fault=record_fault)
    if isinstance(
        exc,
        EndpointConnectionError
        | ConnectTimeoutError
        | ReadTimeoutError
        | ConnectionClosedError
        | ConnectionError
        | TimeoutError,
    ):
        return AwsError(f"connection failed: {exc}", code="Connection", retryable=True)
    if isinstance(exc, BotoCoreError):
        return AwsError(f"{type(exc).__name__}: {exc}", code=type(exc).__name__, retryable=False)
    if _is_aiohttp_client_error(exc):
        return AwsError(f"connection failed: {exc}", code="Connection", retryable=True)
    raise exc


def _is_aiohttp_client_error(exc: BaseException) -> bool:
    import aiohttp

    return isinstance(exc, aiohttp.ClientError)


class Clients:
    """Creates aioboto3 clients per (service, region), honouring endpoint overrides.

    Credentials come from the standard AWS chain (environment, profile, role); none
    are ever read from replicator's config.
    """

    def __init__(self, endpoints: Mapping[str, str] | None = None) -> None:
        self._session = aioboto3.Session()
        self._endpoints = dict(endpoints or {})
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[tuple[str, str], Any] = {}

    async def get(self, service: str, region: str) -> Any:
        """A client for ``service`` in ``region``, created once and reused."""
        key = (service, region)
        if key not in self._clients:
            client = self._session.client(
                service,
                region_name=region,
                endpoint_url=self._endpoints.get(region),
                config=_BOTO_CONFIG,
            )
            self._clients[key] = await self._stack.enter_async_context(client)
        return self._clients[key]

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
