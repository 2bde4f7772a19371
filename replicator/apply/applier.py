"""Applies changes to one target: serial per key, parallel across keys, bounded.

One ``TargetApplier`` exists per target table and is shared by every shard that
feeds it, so its concurrency limit (adaptive, or pinned by ``max_concurrency``) and
``max_writes_per_second`` bound the target as a whole.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from replicator.apply.limit import AdaptiveSlots, ConcurrencyLimit, Pacer, ceiling_of
from replicator.aws.backoff import Backoff
from replicator.aws.retry import RETRY_BACKOFF, RetryPolicy
from replicator.errors import AwsError, RecordError, ShutdownInterrupted, ThrottledError
from replicator.models import Change, ItemKey, Mode, Outcome, TargetRef
from replicator.stream.kinesis_records import UNDECODABLE, change_body
from replicator.stream.kv import merge
from replicator.stream.records import coalesces_into
from replicator.telemetry.heartbeat import sent_at
from replicator.telemetry.metrics import Metrics

log = logging.getLogger(__name__)


DEAD_LETTER = "dead_letter"  # set on dead-letter log records, so a console can sum them up


def record_key(record: dict[str, Any]) -> str:
    """A stream record's key as ``name=value, ...`` ("?" when the record has none; a
    Kinesis record's keys are inside its data, "undecodable" when that does not decode)."""
    try:
        keys = change_body(record).get("Keys")
    except RecordError:
        return UNDECODABLE
    if not isinstance(keys, dict) or not keys:
        return "?"
    return ", ".join(
        f"{name}={next(iter(value.values()), '?') if isinstance(value, dict) else value}"
        for name, value in sorted(keys.items())
    )


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
    successor: _Run | None = None  # the key's next run, from a later batch


def _written_by_successor(run: _Run) -> bool:
    """True when ``run`` is coalesced into the key's next run (``records.coalesces_into``).

    A frequently written key (the heartbeat) on a slow target queued one write per
    batch behind the write in flight, so its lag grew by a round trip per batch.
    """
    following = run.successor
    return following is not None and coalesces_into(run.changes, following.changes)


def _hand_kv_on(run: _Run) -> None:
    """The successor that writes ``run`` for it also carries its kv (DESIGN §4b: a
    coalesced run's kv merges every record of the run, across batches too)."""
    following = run.successor
    assert following is not None
    first = following.changes[0]
    if first.kv is not None:
        kvs = [c.kv for c in run.changes if c.kv is not None]
        following.changes[0] = dataclasses.replace(first, kv=merge((*kvs, first.kv)))


class TargetApplier:
    def __init__(
        self,
        writer: ChangeWriter,
        dlq: DeadLetterSink,
        *,
        target: TargetRef,
        metrics: Metrics,
        max_concurrency: int | Literal["auto"] = "auto",
        max_writes_per_second: float | None = None,
        backoff: Backoff | None = None,
        stop: asyncio.Event | None = None,
        clock: Callable[[], float] = time.time,
        heartbeat_prefix: str | None = None,
        retry: RetryPolicy | None = None,
        checked: Callable[[], Awaitable[bool]] | None = None,
        mode: Mode = Mode.ONE_WAY,
    ) -> None:
        """``checked`` is awaited before each batch: False (the target's start-up check
        failed) interrupts it, so nothing reaches a target before its check passed.
        ``mode`` is the writer's: coalescing a Kinesis batch depends on it."""
        self.target = target
        self.mode = mode
        self._checked = checked
        self._writer = writer
        self._dlq = dlq
        self._metrics = metrics
        pinned = isinstance(max_concurrency, int)
        self.limit = ConcurrencyLimit(
            ceiling=ceiling_of(max_concurrency),
            fixed=pinned,
        )
        # Bounds the target across every shard feeding it; its capacity follows the limit.
        self._slots = AdaptiveSlots(self.limit)
        # Every attempt takes its turn, retries included: a throttled target is not
        # hammered past the operator's cap by the writes it refused.
        self._paced = Pacer(max_writes_per_second) if max_writes_per_second else None
        self._retry = retry or RetryPolicy(
            stop=stop, observer=metrics, backoff=backoff or RETRY_BACKOFF
        )
        self._clock = clock
        self._heartbeat_prefix = heartbeat_prefix
        self.in_flight = 0
        # Per key, the run that writes it last among the batches being applied: a lane
        # applies more than one batch at a time, and a key's writes must keep stream order.
        self._tails: dict[ItemKey, _Run] = {}

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
            if self._checked is not None and not await self._checked():
                raise ShutdownInterrupted(f"stopping: the start-up check of {self.target} failed")
            for record, reason in dead:
                await self.dead_letter(source_table, record, reason)
                self._metrics.outcome(source_table, self.target, Outcome.DEAD_LETTERED)
            # A few workers share the keys instead of a task per key: per-key tasks cost
            # more CPU than the rest of a record's trip through the pipeline. There are as
            # many as the limit allows, hired as it grows.
            pending = collections.deque(runs)
            workers = 0
            async with asyncio.TaskGroup() as group:

                def hire() -> None:
                    nonlocal workers
                    while workers < min(self.limit.limit, len(pending)):
                        workers += 1
                        group.create_task(self._work_through(source_table, pending, hire))

                hire()
        finally:
            for run in runs:  # runs never started (an error stopped the batch) free their key
                self._release(run)

    def _claim(self, key: ItemKey, changes: list[Change]) -> _Run:
        previous = self._tails.get(key)
        run = _Run(
            key,
            changes,
            previous.done if previous else None,
            asyncio.get_running_loop().create_future(),
        )
        if previous is not None:
            previous.successor = run
        self._tails[key] = run
        return run

    def _release(self, run: _Run) -> None:
        if not run.done.done():
            run.done.set_result(None)
        if self._tails.get(run.key) is run:
            del self._tails[run.key]

    async def _work_through(
        self, source_table: str, runs: collections.deque[_Run], hire: Callable[[], None]
    ) -> None:
        while runs:
            run = runs.popleft()
            try:
                if run.after is not None and not run.after.done():
                    await asyncio.wait((run.after,))  # wait, not await: never cancel it
                if _written_by_successor(run):
                    _hand_kv_on(run)
                    continue  # ``finally`` releases the key to the successor
                async with self._slots:
                    for change in run.changes:
                        outcome = await self._apply_one(source_table, change)
                        if outcome is Outcome.APPLIED:
                            self._observe_lag(source_table, change)
                        else:
                            self._metrics.outcome(source_table, self.target, outcome)
            finally:
                self._release(run)
            hire()

    async def _apply_one(self, source_table: str, change: Change) -> Outcome:
        """Write ``change``, waiting out retryable faults; a record fault goes to the DLQ."""
        try:
            return await self._retry.call(
                TARGET_WRITE, self.target.region, lambda: self._attempt(change), before=self._paced
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
            return await self._timed_put(change)
        finally:
            self.in_flight -= 1

    async def _timed_put(self, change: Change) -> Outcome:
        """One write; its round trip is reported to the limit when the target answered it.

        Other failures (connection errors, 5xx) say nothing about the target's queue, and
        a refused connection's instant answer would pass for a very short round trip.
        """
        started = time.monotonic()
        try:
            outcome = await self._writer.put(change, now=self._clock())
        except ThrottledError:
            self._sample(started, throttled=True)
            raise
        self._sample(started, throttled=False)
        return outcome

    def _sample(self, started: float, *, throttled: bool) -> None:
        self.limit.sample(time.monotonic() - started, in_flight=self.in_flight, throttled=throttled)
        self._slots.refresh()  # a grown limit lets waiting writes start now

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
        log.error(
            "dead-lettering %s key %s for %s: %s",
            source_table,
            record_key(record),
            self.target,
            reason,
            extra={
                DEAD_LETTER: True,
                "source_table": source_table,
                "key": record_key(record),
                "target": str(self.target),
                "reason": reason,
            },
        )
        await self._dlq.put(
            source_table=source_table,
            target=self.target,
            record=record,
            reason=reason,
            recreate=recreate,
        )
