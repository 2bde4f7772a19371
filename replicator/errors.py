"""Every error replicator raises, in one tree.

    ReplicatorError
    ├── ConfigError              bad replicator.yaml or CLI input (exit code 2)
    ├── AwsError                 an AWS call failed; ``retryable`` says whether to try again
    │   ├── ThrottledError       throughput exceeded / request limit (retryable)
    │   ├── ExpiredIteratorError shard iterator older than 15 minutes: re-seek
    │   ├── TrimmedDataError     records were trimmed before we read them: data loss alarm
    │   ├── RequestError         a request we built wrongly was refused: a bug, never a DLQ entry
    │   ├── ResourceNotFound     table, stream or shard does not exist
    │   └── GaveUp               a tool's call kept failing past its bound (the service never)
    ├── RecordError              a stream record that cannot be applied (goes to the DLQ)
    ├── ShutdownInterrupted      a retry loop gave up because the service is stopping
    │   └── LeaseLost            this process may no longer write for a table (DESIGN §6)
    └── EmbeddedBackendError     the embedded moto server did not start

Only ``replicator.aws`` reads botocore error codes and maps them into this tree.
"""

from __future__ import annotations


class ReplicatorError(Exception):
    """Base of every error raised by replicator."""


class ConfigError(ReplicatorError):
    """Invalid configuration; the message is one line naming the field and the fix."""


class AwsError(ReplicatorError):
    """An AWS request failed."""

    def __init__(
        self, message: str, *, code: str = "", retryable: bool = False, record_fault: bool = False
    ) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        # The request was refused because of the record itself (too large, bad types):
        # retrying cannot help, the record goes to the DLQ.
        self.record_fault = record_fault


class ThrottledError(AwsError):
    """The request was throttled; always retryable."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message, code=code, retryable=True)


class ExpiredIteratorError(AwsError):
    """The shard iterator expired; seek again after the last sequence number read."""


class TrimmedDataError(AwsError):
    """Records past the stream's 24 h retention were trimmed before they were read."""


class RequestError(AwsError):
    """A ValidationException caused by the shape of our own request, not by the record.

    Never retried and never dead-lettered: every record would fail the same way.
    """

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message, code=code, retryable=False)


class ResourceNotFound(AwsError):
    """A table, stream or shard does not exist."""


class GaveUp(AwsError):
    """A retryable fault outlasted a tool's bound; the message names the call and last error."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message, code=code, retryable=False)


class RecordError(ReplicatorError):
    """A stream record cannot be applied; ``reason`` is stored with it in the DLQ."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ShutdownInterrupted(ReplicatorError):
    """Work was abandoned for shutdown before it completed; nothing was checkpointed past it."""


class LeaseLost(ShutdownInterrupted):
    """The table's lease was lost or not renewed in time: stop writing, checkpoint nothing."""


class EmbeddedBackendError(ReplicatorError):
    """The embedded DynamoDB (moto server) failed to start."""
