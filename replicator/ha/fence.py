"""Writes that happen only while this process holds its table's lease (DESIGN §6).

Each wrapper asks the fence right before the request, so an active process that lost
its lease, or could not renew it in time, starts no target write, dead-letter write or
checkpoint. Target writes are also bounded by the lease's write timeout: the fence's
arithmetic counts on a write started before it closed ending within that time.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Protocol

from replicator.apply.applier import ChangeWriter
from replicator.aws.json_client import DynamoDB
from replicator.aws.retry import RetryPolicy
from replicator.errors import AwsError, LeaseLost
from replicator.models import Change, Outcome
from replicator.pipeline.checkpoint import CheckpointStore


class Fence(Protocol):
    source_table: str

    def may_write(self) -> bool: ...


def _check(fence: Fence, what: str) -> None:
    if not fence.may_write():
        raise LeaseLost(f"{what} for {fence.source_table} not started: the lease is not held")


def send_guard(fence: Fence, what: str = "target write") -> Callable[[], None]:
    """The check, repeated as a request is sent: a target write's bytes (``put_client``), or
    each attempt of a dead letter or checkpoint (a retry must not outlive the lease either).
    """
    return functools.partial(_check, fence, what)


class FencedWriter:
    def __init__(self, writer: ChangeWriter, fence: Fence, *, timeout: float) -> None:
        self._writer = writer
        self._fence = fence
        self._timeout = timeout

    async def put(self, change: Change, *, now: float) -> Outcome:
        _check(self._fence, "target write")
        try:
            async with asyncio.timeout(self._timeout):
                return await self._writer.put(change, now=now)
        except TimeoutError:
            raise AwsError(
                f"target write took over {self._timeout:g} s (lease.write_timeout_seconds)",
                code="Timeout",
                retryable=True,
            ) from None


class FencedCheckpoints(CheckpointStore):
    """Checkpoints saved only under the lease: a refused save raises ``LeaseLost``, which
    the pipeline takes as a save that did not happen (it stops, nothing is recorded)."""

    def __init__(
        self, client: DynamoDB, table: str, fence: Fence, *, retry: RetryPolicy | None = None
    ) -> None:
        super().__init__(client, table, retry=retry, guard=send_guard(fence, "checkpoint"))
