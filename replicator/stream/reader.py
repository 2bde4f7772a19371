"""``ShardReader``: reads one shard from a checkpoint to its end, surviving what streams do.

- empty reads back off (jittered, exponential, capped) and the backoff resets on data;
- throttling and retryable errors are waited out by the retry policy (a 5xx also
  seeks a fresh iterator: a stale one looks like a 5xx on moto);
- an expired iterator re-seeks just after the last sequence number delivered;
- trimmed data (records lost before we read them) raises the alarm through
  ``on_trimmed`` and an ERROR log, then reading continues from the trim horizon;
- with ``min_interval`` (Kinesis: five GetRecords per shard per second) calls are paced;
- anything else propagates.

Every wait wakes as soon as ``stop`` is set. Records are delivered at least once: a
duplicate range from the stream is passed on, the conflict rule makes it harmless.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from replicator.aws.backoff import Backoff, pause
from replicator.aws.retry import RETRY_BACKOFF, RetryPolicy, Wait
from replicator.errors import (
    AwsError,
    ExpiredIteratorError,
    ResourceNotFound,
    ShutdownInterrupted,
    ThrottledError,
    TrimmedDataError,
)
from replicator.stream.positions import is_sequence
from replicator.stream.records import sequence_of
from replicator.stream.source import MAX_RECORDS_PER_CALL, Page, StreamSource

log = logging.getLogger(__name__)

# An idle shard is polled at least four times a second (like Lambda's event source
# mapping): the cap is what a quiet stream adds to lag, and DynamoDB Streams allows
# five GetRecords per shard per second.
IDLE_BACKOFF = Backoff(base=0.05, cap=0.25)
GET_RECORDS = "GetRecords"


@dataclass(frozen=True, slots=True)
class Batch:
    """Records of one GetRecords page, in stream order.

    ``last_sequence`` is the highest sequence number delivered so far, None for an
    empty batch; a checkpoint there is safe once the batch is applied. The last batch
    of a closed shard has ``shard_ended`` set (and may be empty).
    """

    shard_id: str
    records: list[dict[str, Any]]
    last_sequence: str | None
    shard_ended: bool


def _ignore(*_: object) -> None:
    return None


@dataclass(frozen=True, slots=True)
class ReaderHooks:
    """Where telemetry plugs in; every hook defaults to doing nothing."""

    on_get_records: Callable[[], None] = _ignore
    on_retry: Callable[[str], None] = _ignore  # reason: throttled | retryable | expired-iterator
    on_trimmed: Callable[[str, str], None] = _ignore  # (shard_id, detail): the data-loss alarm
    on_behind: Callable[[str, int], None] = _ignore  # (shard_id, MillisBehindLatest): Kinesis


@dataclass(frozen=True, slots=True)
class _RetriesToHooks:
    """Reports the retry policy's failures to ``on_retry`` (a reader without telemetry)."""

    hooks: ReaderHooks

    def call_failing(self, call: str, region: str, error: AwsError) -> None:
        self.hooks.on_retry("throttled" if isinstance(error, ThrottledError) else "retryable")

    def call_recovered(self, call: str, region: str) -> None:
        return None


class ShardReader:
    """Reads one shard, starting just after ``after`` (the trim horizon when None)."""

    def __init__(
        self,
        source: StreamSource,
        stream_arn: str,
        shard_id: str,
        *,
        after: str | None = None,
        stop: asyncio.Event,
        hooks: ReaderHooks | None = None,
        idle_backoff: Backoff = IDLE_BACKOFF,
        retry_backoff: Backoff = RETRY_BACKOFF,
        limit: int = MAX_RECORDS_PER_CALL,
        rng: random.Random | None = None,
        wait: Wait = pause,
        retry: RetryPolicy | None = None,
        region: str = "",
        min_interval: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.shard_id = shard_id
        self._source = source
        self._stream_arn = stream_arn
        self._position = after
        self._stop = stop
        self._hooks = hooks or ReaderHooks()
        self._idle_backoff = idle_backoff
        self._retry_backoff = retry_backoff
        self._limit = limit
        self._rng = rng or random.Random()
        self._wait = wait
        self._retry = retry or RetryPolicy(
            stop=stop, observer=_RetriesToHooks(self._hooks), backoff=retry_backoff, wait=wait
        )
        self._region = region
        self._iterator: str | None = None
        self._min_interval = min_interval
        self._clock = clock
        self._last_call = -min_interval

    @property
    def position(self) -> str | None:
        """The last sequence number delivered (or the starting checkpoint: a sequence number,
        or a replay's time); None: trim horizon."""
        return self._position

    async def batches(self) -> AsyncGenerator[Batch, None]:
        """Batches until the shard ends or ``stop`` is set; never yields an empty open batch."""
        idle = 0
        failures = 0
        while not self._stop.is_set():
            if await self._paced():
                return
            try:
                page = await self._retry.call(GET_RECORDS, self._region, self._read_page)
            except ShutdownInterrupted:
                return
            except (ExpiredIteratorError, TrimmedDataError) as exc:
                failures += 1
                self._iterator = None
                delay = self._recover(exc, failures)
                if delay > 0 and await self._wait(delay, self._stop):
                    return
                continue
            except ResourceNotFound as exc:
                # Listed, then aged out (24 h) before it was read: what it held is gone.
                # The loss is alarmed and the shard ends, so its children are read.
                where = self._position or "TRIM_HORIZON"
                detail = f"the shard no longer exists ({exc}), read up to {where}"
                self._hooks.on_trimmed(self.shard_id, detail)
                log.error(
                    "shard %s: %s; its unread records are lost",
                    self.shard_id,
                    detail,
                    extra={"shard": self.shard_id, "reason": "shard gone"},
                )
                yield Batch(self.shard_id, [], None, True)
                return
            if self._stop.is_set():
                # Not yielded, so never checkpointed: a restart reads these records again.
                return
            failures = 0
            self._iterator = page.next_iterator
            if page.millis_behind_latest is not None:
                self._hooks.on_behind(self.shard_id, page.millis_behind_latest)
            if page.records:
                idle = 0
                self._advance(page.records)
            ended = self._iterator is None
            if page.records or ended:
                last = self._position if page.records else None
                yield Batch(self.shard_id, page.records, last, ended)
            if ended:
                return
            if not page.records:
                delay = self._idle_backoff.delay(idle, self._rng)
                idle += 1
                if await self._wait(delay, self._stop):
                    return

    async def _paced(self) -> bool:
        """Wait until ``min_interval`` has passed since the last GetRecords; True: stopped."""
        early = self._last_call + self._min_interval - self._clock()
        return early > 0 and await self._wait(early, self._stop)

    async def _read_page(self) -> Page:
        """One attempt: an iterator if there is none, then one GetRecords."""
        if self._iterator is None:
            self._iterator = await self._source.iterator(
                self._stream_arn, self.shard_id, after=self._position
            )
        self._hooks.on_get_records()
        self._last_call = self._clock()
        try:
            return await self._source.get_records(self._iterator, limit=self._limit)
        except AwsError as exc:
            if exc.retryable and not isinstance(exc, ThrottledError):
                self._iterator = None  # a stale iterator looks like a 5xx on moto
            raise

    def _recover(self, exc: ExpiredIteratorError | TrimmedDataError, failures: int) -> float:
        """Seconds to wait before seeking a fresh iterator after ``exc``."""
        # Expiry and trimming are answered by a fresh iterator, not by waiting; only if
        # that keeps failing does the backoff apply, so a broken source cannot spin.
        repeated = self._retry_backoff.delay(failures - 2, self._rng) if failures > 1 else 0.0
        if isinstance(exc, ExpiredIteratorError):
            self._hooks.on_retry("expired-iterator")
            log.info("shard %s: iterator expired, re-seeking at %s", self.shard_id, self._position)
            return repeated
        where = "TRIM_HORIZON" if self._position is None else f"after {self._position}"
        detail = f"position {where}: {exc}"
        self._hooks.on_trimmed(self.shard_id, detail)
        log.error(
            "shard %s: records trimmed before they were read (%s); "
            "continuing from the trim horizon, data in between is lost",
            self.shard_id,
            detail,
            extra={"shard": self.shard_id, "reason": "trimmed"},
        )
        self._position = None
        return repeated

    def _advance(self, records: list[dict[str, Any]]) -> None:
        # A duplicated range may be older than what was delivered: never move backwards.
        # The stream's own spelling is kept: it goes back to AFTER_SEQUENCE_NUMBER as is.
        # A record without a number (never seen from DynamoDB) moves nothing here; the
        # decoder dead-letters it as "unsequenced".
        numbers = [n for r in records if (n := sequence_of(r)).isdigit()]
        if not numbers:
            return
        newest = max(numbers, key=int)
        # A replay's time is older than every record read from there.
        if not is_sequence(self._position) or int(newest) > int(self._position or 0):
            self._position = newest
