"""Writes that happen only while this process holds its table's lease (DESIGN §6).

Each wrapper asks the fence right before the request, so an active process that lost
its lease, or could not renew it in time, starts no target write, dead-letter write or
checkpoint. Target writes are also bounded by the lease's write timeout: the fence's
arithmetic counts on a write started before it closed ending within that time.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any, Protocol

from replicator.apply.applier import ChangeWriter, DeadLetterSink
from replicator.checkpoint import Checkpoint, CheckpointStore, TargetRef
from replicator.errors import AwsError, LeaseLost
from replicator.models import Change, Outcome
from replicator.retry import RetryPolicy

log = logging.getLogger(__name__)


class Fence(Protocol):
    source_table: str

    def may_write(self) -> bool: ...


def _check(fence: Fence, what: str) -> None:
    if not fence.may_write():
        raise LeaseLost(f"{what} for {fence.source_table} not started: the lease is not held")


def send_guard(fence: Fence) -> Callable[[], None]:
    """The check repeated as a target write's bytes are sent (``Clients.put_client``)."""
    return functools.partial(_check, fence, "target write")


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


class FencedDeadLetters:
    def __init__(self, dlq: DeadLetterSink, fence: Fence) -> None:
        self._dlq = dlq
        self._fence = fence

    async def put(
        self,
        *,
        source_table: str,
        target: TargetRef,
        record: dict[str, Any],
        reason: str,
        recreate: bool = False,
    ) -> None:
        _check(self._fence, "dead-letter write")
        await self._dlq.put(
            source_table=source_table,
            target=target,
            record=record,
            reason=reason,
            recreate=recreate,
        )


class FencedCheckpoints(CheckpointStore):
    """Checkpoints saved only under the lease; a refused save is reported as not stored."""

    def __init__(
        self, client: Any, table: str, fence: Fence, *, retry: RetryPolicy | None = None
    ) -> None:
        super().__init__(client, table, retry=retry)
        self._fence = fence

    async def save(self, source_table: str, checkpoint: Checkpoint) -> bool:
        if not self._fence.may_write():
            log.info("checkpoint %s not saved: the lease is not held", checkpoint)
            return False
        return await super().save(source_table, checkpoint)
