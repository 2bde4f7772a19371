"""Applies changes to one target: serial per key, parallel across keys, bounded.

One ``TargetApplier`` exists per target table and is shared by every shard that
feeds it, so ``max_concurrency`` and ``max_writes_per_second`` bound the target
as a whole.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from asyncio_throttle.throttler import Throttler

from replicator.backoff import Backoff
from replicator.checkpoint import TargetRef
from replicator.errors import AwsError
from replicator.models import Change, ItemKey, Outcome
from replicator.retry import RETRY_BACKOFF, RetryPolicy
from replicator.telemetry.heartbeat import sent_at
from replicator.telemetry.metrics import Metrics

log = logging.getLogger(__name__)


class ChangeWriter(Protocol):
    async def put(self, change: Change, *, now: float) -> Outcome: ...


class DeadLetterSink(Protocol):
    async def put(
        self,
        *,
        source_table: str,
        target: TargetRef,
        record: dict[str, Any],
        reason: str,
        recreate: bool = False,
    ) -> None: ...


TARGET_WRITE = "target write"


@dataclass(slots=True)
class _Run:
    """One key's changes in one batch; it starts once ``after`` (the key's previous run) is done."""

    key: ItemKey
    changes: list[Change]
    after: asyncio.Future[None] | None
    done: asyncio.Future[None]


class TargetApplier:
    def __init__(
        self,
        writer: ChangeWriter,
        dlq: DeadLetterSink,
        *,
        target: TargetRef,
        metrics: Metrics,
        max_concurrency: int,
        max_writes_per_second: float | None = None,
        backoff: Backoff | None = None,
        stop: asyncio.Event | None = None,
        clock: Callable[[], float] = time.time,
        heartbeat_prefix: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.target = target
        self._writer = writer
        self._dlq = dlq
        self._metrics = metrics
        self._max_concurrency = max_concurrency
        self._slots = asyncio.Semaphore(max_concurrency)
        self._throttler = (
            Throttler(rate_limit=max(1, round(max_writes_per_second)), period=1.0)
            if max_writes_per_second
            else None
        )
        self._retry = retry or RetryPolicy(
            stop=stop, observer=metrics, backoff=backoff or RETRY_BACKOFF
        )
        self._clock = clock
        self._heartbeat_prefix = heartbeat_prefix
        self.in_flight = 0
        # Per key, the run that writes it last among the batches being applied: a lane
        # applies more than one batch at a time, and a key's writes must keep stream order.
        self._tails: dict[ItemKey, asyncio.Future[None]] = {}

    async def apply(
        self,
        source_table: str,
        per_key: Mapping[ItemKey, list[Change]],
        dead: Iterable[tuple[dict[str, Any], str]] = (),
    ) -> None:
        """Apply every change (or dead-letter it); return when all are settled.

        Batches may be applied concurrently: each key is written after the same key's
        changes from every batch whose ``apply`` began earlier.
        """
        # Claimed before the first await, so the order of calls is the order per key.
        runs = [self._claim(key, changes) for key, changes in per_key.items()]
        try:
            for record, reason in dead:
                await self.dead_letter(source_table, record, reason)
                self._metrics.outcome(source_table, self.target, Outcome.DEAD_LETTERED)
            # A few workers share the keys instead of a task per key: per-key tasks cost
            # more CPU than the rest of a record's trip through the pipeline.
            pending = iter(runs)
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self._max_concurrency, len(runs))):
                    group.create_task(self._work_through(source_table, pending))
        finally:
            for run in runs:  # runs never started (an error stopped the batch) free their key
                self._release(run)

    def _claim(self, key: ItemKey, changes: list[Change]) -> _Run:
        run = _Run(key, changes, self._tails.get(key), asyncio.get_running_loop().create_future())
        self._tails[key] = run.done
        return run

    def _release(self, run: _Run) -> None:
        if not run.done.done():
            run.done.set_result(None)
        if self._tails.get(run.key) is run.done:
            del self._tails[run.key]

    async def _work_through(self, source_table: str, runs: Iterator[_Run]) -> None:
        for run in runs:
            try:
                if run.after is not None and not run.after.done():
                    await asyncio.wait((run.after,))  # wait, not await: never cancel it
                async with self._slots:  # bounds the target across every shard feeding it
                    for change in run.changes:
                        outcome = await self._apply_one(source_table, change)
                        if outcome is Outcome.APPLIED:
                            self._observe_lag(source_table, change)
                        else:
                            self._metrics.outcome(source_table, self.target, outcome)
            finally:
                self._release(run)

    async def _apply_one(self, source_table: str, change: Change) -> Outcome:
        """Write ``change``, waiting out retryable faults; a record fault goes to the DLQ."""
        try:
            if self._throttler is None:
                return await self._retry.call(
                    TARGET_WRITE, self.target.region, lambda: self._attempt(change)
                )
            async with self._throttler:
                return await self._retry.call(
                    TARGET_WRITE, self.target.region, lambda: self._attempt(change)
                )
        except AwsError as exc:
            if not exc.record_fault:
                raise
            reason = f"{exc.code}: {exc}"
        # Outside the handler: a failing DLQ put is its own error, not one raised while
        # handling the write's.
        await self.dead_letter(
            source_table, change.record, reason, recreate=change.incoming.recreate
        )
        return Outcome.DEAD_LETTERED

    async def _attempt(self, change: Change) -> Outcome:
        self.in_flight += 1
        try:
            return await self._writer.put(change, now=self._clock())
        finally:
            self.in_flight -= 1

    def _observe_lag(self, source_table: str, change: Change) -> None:
        now = self._clock()
        self._metrics.outcome(
            source_table, self.target, Outcome.APPLIED, lag=now - change.created_at
        )
        if self._heartbeat_prefix is not None:
            beat = sent_at(change, self._heartbeat_prefix)
            if beat is not None:
                self._metrics.heartbeat(source_table, self.target, sent_at=beat, lag=now - beat)

    async def dead_letter(
        self, source_table: str, record: dict[str, Any], reason: str, *, recreate: bool = False
    ) -> None:
        log.error("dead-lettering record for %s: %s", self.target, reason)
        await self._dlq.put(
            source_table=source_table,
            target=self.target,
            record=record,
            reason=reason,
            recreate=recreate,
        )
