"""How many writes one target gets at once: adaptive (Vegas / AIMD) or pinned.

``ConcurrencyLimit`` is pure logic: the applier reports each write's round trip and
whether it was throttled, and reads ``limit``. Decisions are taken once per window of
about two round trips, so a change is judged on writes sent after it:

- throttled writes in the window: the limit drops to the share of writes that got
  through, a little below (so a table throttling above X writes/s is run just under X);
- round trip far above its floor (the target or this process queues): shrink by 10 %,
  but not below where it started: a target whose every answer slows with load (moto, a
  hot partition) would otherwise be starved down to one write at a time;
- round trip near its floor and the limit in use: grow, doubling until the first
  congestion (slow start), then by 5 % per window;
- otherwise (the limit is not in use, or the round trip is rising a little): hold.

``AdaptiveSlots`` is the asyncio side: a semaphore whose capacity follows the limit.
``Pacer`` spaces writes for ``max_writes_per_second``.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from replicator.aws.http_pool import AUTO_CEILING

INITIAL_LIMIT = 32
MIN_LIMIT = 1
GROW_BELOW = 1.5  # round trip / floor: near the floor
SHRINK_ABOVE = 2.5  # round trip / floor: queueing
SHRINK_FACTOR = 0.9
THROTTLE_MARGIN = 0.95  # of what got through when throttled
CAREFUL_GROWTH = 0.05
MIN_WINDOW_SECONDS = 0.02
# The floor is re-learnt this often, so a path that became slower for good is not
# judged against a round trip it will never see again.
FLOOR_MEMORY_SECONDS = 30.0


def ceiling_of(max_concurrency: int | Literal["auto"]) -> int:
    """The most writes a target may have in flight: the pinned number, or the auto ceiling."""
    return AUTO_CEILING if max_concurrency == "auto" else max_concurrency


@dataclass(slots=True)
class _Window:
    started: float
    samples: int = 0
    throttled: int = 0
    rtt_total: float = 0.0
    rtt_min: float = math.inf
    busiest: int = 0  # most writes in flight seen when a sample arrived


class ConcurrencyLimit:
    """The adaptive limit of one target; ``fixed`` pins it at ``ceiling``."""

    def __init__(
        self,
        *,
        ceiling: int = AUTO_CEILING,
        fixed: bool = False,
        initial: int = INITIAL_LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ceiling < MIN_LIMIT:
            raise ValueError(f"ceiling must be at least {MIN_LIMIT}, not {ceiling}")
        self.ceiling = ceiling
        self.fixed = fixed
        self._initial = max(MIN_LIMIT, min(initial, ceiling))
        self.limit = ceiling if fixed else self._initial
        self._clock = clock
        self._window = _Window(clock())
        self._floor = math.inf
        self._floor_since = clock()
        self._slow_start = True

    def sample(self, rtt: float, *, in_flight: int, throttled: bool = False) -> None:
        """One write finished after ``rtt`` seconds, with ``in_flight`` writes out (itself too)."""
        if self.fixed:
            return
        window = self._window
        window.samples += 1
        window.busiest = max(window.busiest, in_flight)
        if throttled:
            window.throttled += 1
        else:
            window.rtt_total += rtt
            window.rtt_min = min(window.rtt_min, rtt)
        now = self._clock()
        # The window's own answers count towards the floor: the very first write pays for
        # its connection (a round trip or more), and a window sized on that alone made
        # slow start take twice as long (bench 8).
        floor = min(self._floor, window.rtt_min)
        length = max(MIN_WINDOW_SECONDS, 2 * floor if floor < math.inf else 0.0)
        if now - window.started >= length:
            self._decide(window, now)
            self._window = _Window(now)

    def _decide(self, window: _Window, now: float) -> None:
        if now - self._floor_since >= FLOOR_MEMORY_SECONDS and window.rtt_min < math.inf:
            self._floor, self._floor_since = window.rtt_min, now
        self._floor = min(self._floor, window.rtt_min)
        if window.throttled:
            self._slow_start = False
            passed = (window.samples - window.throttled) / window.samples
            self._set(min(self.limit, window.busiest) * passed * THROTTLE_MARGIN)
            return
        answered = window.samples - window.throttled
        ratio = (window.rtt_total / answered) / self._floor if answered else 1.0
        if ratio > SHRINK_ABOVE:
            self._slow_start = False
            self._set(max(min(self.limit, self._initial), self.limit * SHRINK_FACTOR))
        elif ratio <= GROW_BELOW and window.busiest * 2 >= self.limit:
            growth = self.limit if self._slow_start else max(1.0, self.limit * CAREFUL_GROWTH)
            self._set(self.limit + growth)

    def _set(self, value: float) -> None:
        self.limit = max(MIN_LIMIT, min(self.ceiling, int(value)))


class AdaptiveSlots:
    """A semaphore whose capacity is ``limit.limit``, read whenever a slot is asked for or freed."""

    def __init__(self, limit: ConcurrencyLimit) -> None:
        self.limit = limit
        self.taken = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self) -> None:
        if self.taken < self.limit.limit and not self._waiters:
            self.taken += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # the slot is handed over by release(), already counted
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed over just as we were cancelled: pass it on
            elif waiter in self._waiters:  # refresh() drops waiters already cancelled
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self.taken -= 1
        self.refresh()

    def refresh(self) -> None:
        """Hand free slots to waiters; called when a slot is freed or the limit may have grown."""
        while self._waiters and self.taken < self.limit.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.taken += 1
                waiter.set_result(None)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *_: object) -> None:
        self.release()


class Pacer:
    """Turns ``1 / rate`` seconds apart; each caller waits for the next free one.

    A fraction is honoured (0.5 writes/s: a turn every 2 s). The turn is taken when asked
    for, so callers start in the order they asked; a caller cancelled while waiting leaves
    its turn unused. ``clock`` and ``sleep`` are injected so tests run on a fake clock.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, not {rate}")
        self.interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next = -math.inf

    async def __call__(self) -> None:
        now = self._clock()
        turn = max(now, self._next)
        self._next = turn + self.interval
        if turn > now:
            await self._sleep(turn - now)
