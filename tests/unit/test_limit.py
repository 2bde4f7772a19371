"""The adaptive concurrency limit as pure logic: a simulated target and an injected clock."""

from __future__ import annotations

import asyncio

import pytest

from replicator.apply.limit import AUTO_CEILING, INITIAL_LIMIT, AdaptiveSlots, ConcurrencyLimit

RTT = 0.08


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_rounds(
    limit: ConcurrencyLimit,
    clock: Clock,
    rounds: int,
    *,
    rtt: float = RTT,
    throttle_above: float | None = None,
    demand: int | None = None,
) -> tuple[list[int], int, int]:
    """Each round sends min(limit, demand) writes that all answer after ``rtt``.

    A target with ``throttle_above`` writes/s refuses what it gets beyond that rate.
    Returns (limit after each round, writes sent, writes throttled).
    """
    seen, sent, throttled = [], 0, 0
    for _ in range(rounds):
        writes = limit.limit if demand is None else min(limit.limit, demand)
        allowed = writes if throttle_above is None else int(throttle_above * rtt)
        clock.now += rtt
        for number in range(writes):
            refused = number >= allowed
            limit.sample(rtt, in_flight=writes - number, throttled=refused)
            throttled += refused
        sent += writes
        seen.append(limit.limit)
    return seen, sent, throttled


def test_starts_modest_and_grows_to_the_ceiling_while_the_round_trip_stays_at_its_floor() -> None:
    clock = Clock()
    limit = ConcurrencyLimit(clock=clock)
    assert limit.limit == INITIAL_LIMIT
    seen, _, _ = run_rounds(limit, clock, 20)
    assert seen[-1] == AUTO_CEILING
    # Slow start: the ceiling is reached in a few round trips, not hundreds.
    assert seen.index(AUTO_CEILING) < 15


def test_settles_just_below_a_throttling_target_with_few_retries() -> None:
    clock = Clock()
    limit = ConcurrencyLimit(clock=clock)
    run_rounds(limit, clock, 40, throttle_above=1000)  # find the throttle point
    seen, sent, throttled = run_rounds(limit, clock, 400, throttle_above=1000)
    rate = (sent - throttled) / (400 * RTT)
    assert rate >= 850
    assert throttled / sent <= 0.05
    assert max(seen) * 0.5 < 1000 * RTT  # never far above what the table takes


def test_shrinks_when_the_round_trip_grows_far_above_its_floor() -> None:
    clock = Clock()
    limit = ConcurrencyLimit(clock=clock, initial=256)
    run_rounds(limit, clock, 2, demand=256)
    seen, _, _ = run_rounds(limit, clock, 15, rtt=RTT * 4)
    # The first slow window still holds the fast round's answers; from then on it shrinks.
    assert seen[1:] == sorted(seen[1:], reverse=True)
    assert seen[-1] < max(seen) * 0.5


def test_latency_alone_never_takes_the_limit_below_where_it_started() -> None:
    clock = Clock()
    limit = ConcurrencyLimit(clock=clock)
    run_rounds(limit, clock, 3, rtt=0.01)
    seen, _, _ = run_rounds(limit, clock, 100, rtt=0.2)
    assert min(seen) == INITIAL_LIMIT


def test_an_unused_limit_does_not_grow() -> None:
    clock = Clock()
    limit = ConcurrencyLimit(clock=clock)
    seen, _, _ = run_rounds(limit, clock, 50, demand=5)
    assert seen[-1] == INITIAL_LIMIT


def test_a_pinned_limit_never_moves() -> None:
    clock = Clock()
    limit = ConcurrencyLimit(ceiling=48, fixed=True, clock=clock)
    run_rounds(limit, clock, 10, throttle_above=100)
    assert limit.limit == 48


def test_the_floor_is_relearnt_after_the_path_got_slower_for_good() -> None:
    clock = Clock()
    limit = ConcurrencyLimit(clock=clock)
    run_rounds(limit, clock, 10, rtt=0.01)
    run_rounds(limit, clock, 500, rtt=0.05)  # over 30 s at the slower round trip
    before = limit.limit
    run_rounds(limit, clock, 20, rtt=0.05)
    assert limit.limit >= before  # judged against the new floor, not shrinking forever


@pytest.mark.timeout(10)
async def test_slots_follow_the_limit_as_it_changes() -> None:
    limit = ConcurrencyLimit(ceiling=4, fixed=True)
    slots = AdaptiveSlots(limit)
    for _ in range(4):
        await slots.acquire()
    waiting = asyncio.ensure_future(slots.acquire())
    await asyncio.sleep(0)
    assert not waiting.done()
    limit.limit = 5  # as the adaptive limit grows
    slots.refresh()
    await waiting
    assert slots.taken == 5
    limit.limit = 2
    for _ in range(4):
        slots.release()
    assert slots.taken == 1
    await slots.acquire()
    blocked = asyncio.ensure_future(slots.acquire())
    await asyncio.sleep(0)
    assert not blocked.done()  # two taken: the shrunk limit holds
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    slots.release()
    assert slots.taken == 1


def test_a_slow_first_answer_does_not_slow_the_next_decisions() -> None:
    """The first write also opens its connection: the next window is not sized on that answer."""
    clock = Clock()
    limit = ConcurrencyLimit(clock=clock)
    clock.now += 4 * RTT
    limit.sample(4 * RTT, in_flight=INITIAL_LIMIT)  # connect + TLS + the write
    before = limit.limit
    for _ in range(3):
        clock.now += RTT
        for number in range(before):
            limit.sample(RTT, in_flight=before - number)
    assert limit.limit > before


@pytest.mark.timeout(10)
async def test_a_waiter_cancelled_as_a_slot_frees_ends_cancelled() -> None:
    # A TaskGroup cancelling its workers (shutdown) while another batch frees a slot: the
    # cancelled waiter must end with its cancellation, not an error of the slots' own.
    slots = AdaptiveSlots(ConcurrencyLimit(ceiling=1, fixed=True))
    await slots.acquire()
    waiting = asyncio.ensure_future(slots.acquire())
    await asyncio.sleep(0)
    waiting.cancel()
    slots.release()  # before the cancelled waiter runs again
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert slots.taken == 0
