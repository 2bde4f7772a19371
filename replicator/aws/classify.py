"""The one place that classifies AWS errors.

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

import sys

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
    RequestError,
    ResourceNotFound,
    ThrottledError,
    TrimmedDataError,
)

# What botocore's standard retry mode retries for DynamoDB, DynamoDB Streams and Kinesis
# (``retries/standard.py`` and ``data/_retry.json``; a unit test reads them as the oracle),
# plus what the DynamoDB Developer Guide's "Error messages and codes" marks "OK to retry".
THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "LimitExceededException",
        "TooManyRequestsException",
        "BandwidthLimitExceeded",
        "SlowDown",
        "EC2ThrottledException",
        # Kinesis: KMS refused to decrypt an encrypted stream's records this fast.
        "KMSThrottlingException",
    }
)
RETRYABLE_CODES = frozenset(
    {
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "TransactionInProgressException",
        # An application's transaction holds the item: the guide says retry; botocore
        # does not (it leaves the choice to the caller), and a replicated write must land.
        "TransactionConflictException",
        # A multi-region strongly consistent table's concurrent write (HTTP 409).
        "ReplicatedWriteConflictException",
        "ExpiredTokenException",  # the next attempt signs with refreshed credentials
    }
)
# Statuses retried whatever their code (botocore: 5xx, 509 and 429 "too many requests").
THROTTLING_STATUS = 429
RETRYABLE_STATUS_FLOOR = 500
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
# DynamoDB's refusals of a request signed more than 5 minutes away from its clock.
INVALID_SIGNATURE = "InvalidSignatureException"
CLOCK_SKEW_MESSAGES = ("Signature expired", "Signature not yet current")


def error_code(exc: ClientError) -> str:
    code: str = exc.response.get("Error", {}).get("Code", "")
    return code


def is_conditional_check_failed(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and error_code(exc) == CONDITIONAL_CHECK_FAILED


def is_expired_token(exc: ClientError) -> bool:
    """Refused for credentials the service holds expired: refreshing them may help."""
    return error_code(exc) == EXPIRED_TOKEN


def is_clock_skew(exc: ClientError) -> bool:
    """Refused as signed too far from the service's clock: correcting ours may help."""
    message: str = exc.response.get("Error", {}).get("Message", "")
    return error_code(exc) == INVALID_SIGNATURE and message.startswith(CLOCK_SKEW_MESSAGES)


def classify(exc: BaseException) -> AwsError:
    """Map a botocore/aiohttp failure into the replicator error tree."""
    if isinstance(exc, AwsError):
        return exc
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = f"{code}: {exc.response.get('Error', {}).get('Message', '')}".rstrip(": ")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in THROTTLING_CODES or status == THROTTLING_STATUS:
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
        if is_clock_skew(exc):
            # Seen only when the answer's Date could not correct our clock (aws.clock).
            return AwsError(
                f"{message}: this host's clock is more than 5 minutes off AWS's and could "
                "not be corrected from the answer's Date header; set the host's clock (NTP)",
                code=code,
            )
        retryable = code in RETRYABLE_CODES or status >= RETRYABLE_STATUS_FLOOR
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
