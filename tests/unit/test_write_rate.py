"""``max_writes_per_second`` spaces a target's writes, fractions included (0.5: one every 2 s).

``Pacer`` is the applier's ``before`` hook (every attempt, retries too, takes a turn). It runs
here on an injected clock: each caller's write time is the clock when it asked plus what it
was told to sleep, so the figures are exact whatever the machine's load.
"""

from __future__ import annotations

import asyncio

import pytest

from replicator.apply.limit import Pacer

pytestmark = pytest.mark.timeout(10)


class FakeTime:
    """A clock that moves only when the test moves it; a sleep is noted, not waited."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: dict[object, float] = {}  # per asyncio task

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept[asyncio.current_task()] = seconds


async def writes_at(pacer: Pacer, time: FakeTime, callers: int) -> list[float]:
    """When each of ``callers`` concurrent writers gets its turn."""

    async def write() -> float:
        asked = time.now
        await pacer()
        return asked + time.slept.get(asyncio.current_task(), 0.0)

    return sorted(await asyncio.gather(*(write() for _ in range(callers))))


async def test_half_a_write_per_second_is_one_write_every_two_seconds() -> None:
    time = FakeTime()
    pacer = Pacer(0.5, clock=time.clock, sleep=time.sleep)
    assert await writes_at(pacer, time, 4) == [0.0, 2.0, 4.0, 6.0]


async def test_two_and_a_half_writes_per_second_are_400_ms_apart() -> None:
    time = FakeTime()
    pacer = Pacer(2.5, clock=time.clock, sleep=time.sleep)
    assert await writes_at(pacer, time, 4) == pytest.approx([0.0, 0.4, 0.8, 1.2])


async def test_an_idle_target_writes_at_once_and_the_next_turn_counts_from_then() -> None:
    time = FakeTime()
    pacer = Pacer(0.5, clock=time.clock, sleep=time.sleep)
    assert await writes_at(pacer, time, 1) == [0.0]
    time.now = 10.0  # idle for longer than a turn: no credit is saved up
    assert await writes_at(pacer, time, 2) == [10.0, 12.0]
