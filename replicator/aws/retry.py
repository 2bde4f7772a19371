"""The one retry policy for every AWS call the service makes (DESIGN §5).

    await policy.call("checkpoint save", region, lambda: client.put_item(...))

Each attempt gets ``attempt_timeout`` seconds; a failure is classified by
``aws.classify`` (the only place that decides what is retryable). A retryable fault
is waited out for as long as it lasts, with jittered exponential backoff: a target
region down for an hour is an hour of retries, not a crash. While a call keeps
failing the ``RetryObserver`` (the service's ``Metrics``) hears of it, which turns
``/readyz`` false with the reason and moves the retry and throttle counters, and a
WARNING naming the call and the region is logged at most once per ``warn_every``.
Anything else is raised at once. When ``stop`` is set the waiting ends with
``ShutdownInterrupted``, so SIGTERM never waits for a region to come back.

The service retries without end: it must outlive any outage. An operator's command
(verify, backfill, dlq, repair) must not hang instead: it runs inside
``giving_up_after(seconds)``, and every policy built there, by the tool or by the shared
helpers it calls (table checks, the applier, the DLQ), raises ``GaveUp`` once a call
has failed for that long without a success in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from replicator.aws.backoff import Backoff, pause
from replicator.aws.classify import classify
from replicator.errors import AwsError, GaveUp, ShutdownInterrupted

log = logging.getLogger(__name__)

T = TypeVar("T")

# Long enough for a 1 MB GetRecords page or a slow conditional put, short enough that a
# blackholed region (connections accepted, never answered) is noticed within seconds
# and that SIGTERM's drain stays well inside a container's 30 s stop timeout.
ATTEMPT_TIMEOUT_SECONDS = 10.0
# A region that is down is polled every 5-10 s once the backoff reached its cap.
RETRY_BACKOFF = Backoff(base=0.1, cap=10.0)
WARN_EVERY_SECONDS = 30.0

# A tool's default: a few minutes of consecutive failures, as long as a region's
# brief unavailability or a deployment of its load balancer tends to last.
TOOL_GIVE_UP_AFTER_SECONDS = 300.0

# The bound of the command running in this context; None (``replicator run``): never.
_GIVE_UP_AFTER: ContextVar[float | None] = ContextVar("give_up_after", default=None)


@contextlib.contextmanager
def giving_up_after(seconds: float | None) -> Iterator[None]:
    """Policies built inside (and in tasks started inside) give up after ``seconds``."""
    token = _GIVE_UP_AFTER.set(seconds)
    try:
        yield
    finally:
        _GIVE_UP_AFTER.reset(token)


Wait = Callable[[float, asyncio.Event], Awaitable[bool]]
"""Waits ``seconds`` or until the event is set; True when it was set."""


class _Attempt:
    __slots__ = ("expired", "task")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.task = task
        self.expired = False


class _Deadlines:
    """Per-attempt timeouts with one timer per second of deadlines, not one per attempt.

    ``asyncio.timeout`` around every call cost ~10 us of CPU per target write (a timer
    handle scheduled and cancelled each time); here attempts due in the same second
    share one. An attempt thus gets between ``timeout`` and ``timeout`` + 1 seconds.
    """

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._due: dict[float, set[_Attempt]] = {}

    def start(self) -> tuple[_Attempt, set[_Attempt]]:
        loop = asyncio.get_running_loop()
        due = float(math.ceil(loop.time() + self._timeout))
        bucket = self._due.get(due)
        if bucket is None:
            bucket = self._due[due] = set()
            loop.call_at(due, self._expire, due)
        task = asyncio.current_task()
        assert task is not None, "the retry policy runs inside a task"
        attempt = _Attempt(task)
        bucket.add(attempt)
        return attempt, bucket

    def _expire(self, due: float) -> None:
        for attempt in self._due.pop(due, ()):
            attempt.expired = True
            attempt.task.cancel()


class RetryObserver(Protocol):
    def call_failing(self, call: str, region: str, error: AwsError) -> None:
        """A retryable failure of ``call`` in ``region``; it will be retried."""
        ...

    def call_recovered(self, call: str, region: str) -> None:
        """``call`` in ``region`` succeeded after failing."""
        ...


@dataclass
class RetryPolicy:
    """Retries one call until it succeeds, fails for good, or ``stop`` is set."""

    stop: asyncio.Event | None = None
    observer: RetryObserver | None = None
    backoff: Backoff = RETRY_BACKOFF
    attempt_timeout: float = ATTEMPT_TIMEOUT_SECONDS
    wait: Wait = pause
    warn_every: float = WARN_EVERY_SECONDS
    clock: Callable[[], float] = time.monotonic
    # Seconds of consecutive failures of one call before ``GaveUp``; None: retry forever.
    give_up_after: float | None = field(default_factory=_GIVE_UP_AFTER.get)
    # Per (call, region): consecutive failures, and when the last WARNING was logged.
    _failures: dict[tuple[str, str], int] = field(default_factory=dict)
    _warned: dict[tuple[str, str], float] = field(default_factory=dict)
    _told: set[tuple[str, str]] = field(default_factory=set)  # streaks with a WARNING
    _deadlines: _Deadlines = field(init=False)

    def __post_init__(self) -> None:
        self._deadlines = _Deadlines(self.attempt_timeout)

    async def call(
        self,
        call: str,
        region: str,
        attempt: Callable[[], Awaitable[T]],
        *,
        before: Callable[[], Awaitable[None]] | None = None,
    ) -> T:
        """``attempt()``'s result; its first non-retryable error, classified, otherwise.

        ``before`` is awaited ahead of every attempt, outside its deadline: a rate cap
        paces retries too, and its wait is never taken for a silent target.
        """
        failures = 0
        failing_since = 0.0
        try:
            while True:
                if before is not None:
                    await before()
                if not failures:
                    failing_since = self.clock()
                timer, bucket = self._deadlines.start()
                try:
                    result = await attempt()
                except asyncio.CancelledError:
                    if not timer.expired or timer.task.uncancel() > 0:
                        raise  # cancelled by its owner, not by the deadline
                    error = AwsError(
                        f"no answer within {self.attempt_timeout:.0f} s",
                        code="Timeout",
                        retryable=True,
                    )
                except Exception as exc:
                    error = classify(exc)
                    if not error.retryable:
                        if error is exc:
                            raise
                        raise error from exc
                else:
                    if self._failures:
                        self._recovered(call, region)
                    return result
                finally:
                    bucket.discard(timer)
                failures += 1
                self._failing(call, region, error)
                delay = self._delay_or_give_up(call, region, error, failures, failing_since)
                if await self.wait(delay, self.stop or asyncio.Event()):
                    raise ShutdownInterrupted(
                        f"{call} in {region} abandoned for shutdown after {failures} failed "
                        f"attempt(s): {error}"
                    )
        except BaseException:
            if failures:
                # Given up (shutdown, a fault that is not retryable, the lease lost): this
                # streak no longer says the call is failing, or /readyz stayed false for good.
                self._streak_over(call, region)
            raise

    def _delay_or_give_up(
        self, call: str, region: str, error: AwsError, failures: int, failing_since: float
    ) -> float:
        """The wait before the next attempt; ``GaveUp`` once the bound is reached."""
        delay = self.backoff.delay(failures - 1)
        if self.give_up_after is None:
            return delay
        failing_for = self.clock() - failing_since
        if failing_for >= self.give_up_after:
            raise GaveUp(
                f"{call} in {region} failed for {failing_for:.0f} s ({failures} attempt(s), "
                f"no success in between); last error: {error}",
                code=error.code,
            )
        return min(delay, self.give_up_after - failing_for)

    def _failing(self, call: str, region: str, error: AwsError) -> None:
        key = (call, region)
        self._failures[key] = self._failures.get(key, 0) + 1
        if self.observer is not None:
            self.observer.call_failing(call, region, error)
        now = self.clock()
        # Rate-limited across outages too: under a steady share of faults every streak is
        # short, and a line per streak would flood the log.
        if now - self._warned.get(key, -self.warn_every) >= self.warn_every:
            self._warned[key] = now
            self._told.add(key)
            log.warning(
                "%s in %s failed (%s); retrying with backoff (%d consecutive failure(s))",
                call,
                region,
                error,
                self._failures[key],
                extra={
                    "call": call,
                    "region": region,
                    "attempt": self._failures[key],
                    "reason": error.code,
                },
            )

    def _recovered(self, call: str, region: str) -> None:
        failures = self._streak_over(call, region)
        if failures is None:
            return
        if (call, region) in self._told:  # the WARNING of this streak gets its ending
            self._told.discard((call, region))
            log.info("%s in %s recovered after %d failed attempt(s)", call, region, failures)

    def _streak_over(self, call: str, region: str) -> int | None:
        """End the streak of failures of ``call`` in ``region``; how long it was, if any."""
        failures = self._failures.pop((call, region), None)
        if failures is not None and self.observer is not None:
            self.observer.call_recovered(call, region)
        return failures
