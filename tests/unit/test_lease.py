"""The lease of DESIGN §6: who may take it, when the holder must stop writing, who is active.

The decisions are pure functions of what a process read and when, on its own clock; the
keeper is driven step by step over an in-memory lease table with a manual clock.
"""

from __future__ import annotations

import asyncio

import pytest

from replicator.aws.factory import Clients
from replicator.demo.embedded import free_port
from replicator.errors import AwsError, LeaseLost
from replicator.ha.fence import FencedCheckpoints, FencedWriter
from replicator.ha.keeper import LeaseKeeper
from replicator.ha.lease import (
    LeaseRecord,
    LeaseState,
    LeaseTimes,
    Role,
    may_take,
    may_write,
    role_of,
    sight,
    state_of,
)
from replicator.models import Change, Checkpoint, Meta, TargetRef
from replicator.stream.records import to_change
from tests.fakes import TableWriter
from tests.records import image, record

TIMES = LeaseTimes(duration=10.0, write_timeout=2.0, margin=1.0)
META = Meta(version="version")
TARGET = TargetRef("eu-west-1", "orders")


def insert(key: str, seq: int) -> Change:
    change = to_change(record("INSERT", seq, new=image(key, 1)), here="us-east-1", meta=META)
    assert isinstance(change, Change)
    return change


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class LeaseTable:
    """The control table's lease items in memory, with the same conditional swap."""

    def __init__(self) -> None:
        self.items: dict[str, LeaseRecord] = {}
        self.failing: AwsError | None = None
        self.lose_answers = False  # the write lands, the answer does not

    async def read(self, source_table: str) -> LeaseRecord | None:
        if self.failing:
            raise self.failing
        return self.items.get(source_table)

    async def swap(
        self, source_table: str, expected: LeaseRecord | None, owner: str
    ) -> LeaseRecord | None:
        if self.failing:
            raise self.failing
        if self.items.get(source_table) != expected:
            return None
        stored = LeaseRecord(owner, expected.counter + 1 if expected else 1)
        self.items[source_table] = stored
        if self.lose_answers:
            raise AwsError("connection failed", code="Connection", retryable=True)
        return stored


def keeper(table: LeaseTable, clock: Clock, owner: str) -> LeaseKeeper:
    return LeaseKeeper(table, "orders", owner=owner, times=TIMES, clock=clock)


# -- the pure decisions ----------------------------------------------------------------


def test_a_free_or_released_lease_may_be_taken_at_once() -> None:
    assert may_take(sight(None, None, 0.0), 0.0, TIMES)
    assert may_take(sight(None, LeaseRecord("", 7), 0.0), 0.0, TIMES)


def test_a_held_lease_may_be_taken_only_a_full_lease_after_its_counter_last_moved() -> None:
    seen = sight(None, LeaseRecord("a", 1), now=100.0)
    seen = sight(seen, LeaseRecord("a", 1), now=105.0)  # unchanged: the clock keeps running
    assert not may_take(seen, 109.9, TIMES)
    assert may_take(seen, 110.0, TIMES)

    moved = sight(seen, LeaseRecord("a", 2), now=109.0)  # renewed: the clock restarts
    assert not may_take(moved, 118.9, TIMES)
    assert may_take(moved, 119.0, TIMES)


def test_the_holder_stops_writing_lease_minus_write_timeout_minus_margin_after_renewing() -> None:
    assert TIMES.fence_after == 7.0
    assert may_write(renewed_at=100.0, now=106.9, times=TIMES)
    assert not may_write(renewed_at=100.0, now=107.0, times=TIMES)
    assert not may_write(renewed_at=None, now=100.0, times=TIMES)
    # Its last write (started before the fence, at most write_timeout long) ends before
    # any taker may start (a full lease after the renewal).
    assert TIMES.fence_after + TIMES.write_timeout < TIMES.duration


def test_states_and_roles() -> None:
    held = LeaseRecord("me", 3)
    assert state_of(None, None, 0.0, TIMES) is LeaseState.WATCHING
    assert state_of(held, 100.0, 101.0, TIMES) is LeaseState.HOLDING
    assert state_of(held, 100.0, 107.0, TIMES) is LeaseState.FENCED
    assert state_of(LeaseRecord("", 4), None, 0.0, TIMES) is LeaseState.RELEASED
    assert [role_of(s) for s in LeaseState] == [
        Role.STANDBY,
        Role.ACTIVE,
        Role.STANDBY,
        Role.STANDBY,
    ]


def test_renewals_come_several_times_before_the_fence_closes() -> None:
    assert TIMES.renew_every * 2 < TIMES.fence_after


# -- the keeper, step by step ----------------------------------------------------------


async def test_the_first_process_takes_a_free_lease_and_the_second_stands_by() -> None:
    table, clock = LeaseTable(), Clock()
    a, b = keeper(table, clock, "a"), keeper(table, clock, "b")

    await a.look()
    await b.look()

    assert (a.state, a.may_write()) == (LeaseState.HOLDING, True)
    assert (b.state, b.may_write()) == (LeaseState.WATCHING, False)
    assert table.items["orders"] == LeaseRecord("a", 1)


async def test_a_standby_takes_over_only_after_the_counter_stood_still_a_full_lease() -> None:
    table, clock = LeaseTable(), Clock()
    a, b = keeper(table, clock, "a"), keeper(table, clock, "b")
    await a.look()
    await b.look()
    clock.now += 6.0
    await a.renew()  # alive: the counter moves
    await b.look()
    clock.now += 9.9
    await b.look()
    assert b.state is LeaseState.WATCHING  # a renewed 9.9 s ago (by b's clock): not yet

    clock.now += 0.1  # a died right after that renewal
    await b.look()

    assert b.state is LeaseState.HOLDING
    assert table.items["orders"] == LeaseRecord("b", 3)
    # The old holder fenced itself 3 s before b could take the lease.
    assert not a.may_write()
    await a.renew()
    assert a.state is LeaseState.WATCHING


async def test_a_holder_that_cannot_renew_stops_writing_in_time_resumes_if_still_owner() -> None:
    table, clock = LeaseTable(), Clock()
    a = keeper(table, clock, "a")
    await a.look()
    table.failing = AwsError("throttled", code="ThrottlingException", retryable=True)
    clock.now += 6.9
    assert a.may_write()
    clock.now += 0.1
    assert (a.state, a.may_write()) == (LeaseState.FENCED, False)

    table.failing = None
    await a.renew()  # nobody took it: the counter still matches
    assert a.state is LeaseState.HOLDING


async def test_a_renewal_whose_answer_was_lost_keeps_the_lease_timed_from_the_older_one() -> None:
    table, clock = LeaseTable(), Clock()
    a = keeper(table, clock, "a")
    await a.look()
    clock.now += 2.0
    table.lose_answers = True
    with pytest.raises(AwsError):
        await a.renew()  # landed as counter 2; a still thinks it holds 1
    table.lose_answers = False
    clock.now += 1.0

    await a.renew()  # refused (counter 2 is stored), then a finds its own name there

    assert a.state is LeaseState.HOLDING
    clock.now = 1000.0 + TIMES.fence_after  # still timed from the take at 1000, not later
    assert a.state is LeaseState.FENCED
    await a.renew()
    assert table.items["orders"] == LeaseRecord("a", 3)
    assert a.state is LeaseState.HOLDING


class HealingObserver:
    """The service's metrics as the retry policy sees them; on the ``heal_at``-th failure
    the table answers again. Each failure also moves the clock ``step`` seconds on."""

    def __init__(self, table: LeaseTable, clock: Clock, *, heal_at: int, step: float) -> None:
        self.table, self.clock, self.heal_at, self.step = table, clock, heal_at, step
        self.failing: list[tuple[str, str, str]] = []
        self.recovered: list[tuple[str, str]] = []

    def call_failing(self, call: str, region: str, error: AwsError) -> None:
        self.failing.append((call, region, error.code))
        self.clock.now += self.step
        if len(self.failing) == self.heal_at:
            self.table.failing = None

    def call_recovered(self, call: str, region: str) -> None:
        self.recovered.append((call, region))


THROTTLED = AwsError("throttled", code="ThrottlingException", retryable=True)


@pytest.mark.timeout(10)
async def test_failing_lease_calls_are_retried_by_the_one_policy_and_reported() -> None:
    table, clock = LeaseTable(), Clock()
    table.failing = THROTTLED
    observer = HealingObserver(table, clock, heal_at=2, step=0.0)
    a = LeaseKeeper(
        table, "orders", owner="a", times=TIMES, clock=clock, observer=observer, region="us-east-1"
    )
    assert await a.acquire(asyncio.Event())
    assert observer.failing == [("lease", "us-east-1", "ThrottlingException")] * 2
    assert observer.recovered == [("lease", "us-east-1")]  # /readyz is true again


@pytest.mark.timeout(10)
async def test_a_holder_whose_renewals_keep_failing_ends_its_tenure_at_the_fence() -> None:
    table, clock = LeaseTable(), Clock()
    observer = HealingObserver(table, clock, heal_at=3, step=4.0)
    renewed = asyncio.Event()

    def on_change(state: LeaseState, _holder: str) -> None:
        if state is LeaseState.HOLDING:
            renewed.set()

    a = LeaseKeeper(
        table, "orders", owner="a", times=TIMES, clock=clock, observer=observer, on_change=on_change
    )
    await a.look()
    renewed.clear()
    table.failing = THROTTLED
    tenure, done = asyncio.Event(), asyncio.Event()
    holding = asyncio.create_task(a.hold(tenure, done))
    # Failures at 0, 4 and 8 s: the fence (7 s after the renewal) closed before the third.
    async with asyncio.timeout(5):
        await tenure.wait()
        assert not renewed.is_set()  # fenced while its renewals were still failing
        await renewed.wait()  # the fourth attempt lands: nobody took the lease meanwhile
    done.set()
    await holding
    assert len(observer.failing) == 3


async def test_a_write_refused_in_a_tenure_ends_it_even_if_a_late_renewal_lands() -> None:
    table, clock = LeaseTable(), Clock()
    a = keeper(table, clock, "a")
    await a.look()
    ending = asyncio.Event()
    with a.tenure(ending):
        assert a.may_write() and not ending.is_set()
        clock.now += TIMES.fence_after  # a renewal is out, slow: the fence closes
        with pytest.raises(LeaseLost):  # its lane drops every later batch from here on
            await FencedWriter(TableWriter(TARGET, meta=META), a, timeout=1.0).put(
                insert("k1", 10), now=0.0
            )
        await a.renew()  # the renewal lands: the lease is held again
        assert a.may_write()
    # The tenure ends all the same; the next one resumes from the checkpoints.
    assert ending.is_set()
    assert a.may_write()  # outside a tenure, asking ends nothing


async def test_release_lets_a_standby_take_over_at_once() -> None:
    table, clock = LeaseTable(), Clock()
    a, b = keeper(table, clock, "a"), keeper(table, clock, "b")
    await a.look()
    await b.look()

    await a.release()
    await b.look()

    assert b.state is LeaseState.HOLDING
    assert table.items["orders"] == LeaseRecord("b", 3)


# -- the fence in front of target writes and checkpoints -------------------------------


async def test_a_fenced_process_starts_no_target_write_and_saves_no_checkpoint() -> None:
    table, clock = LeaseTable(), Clock()
    a = keeper(table, clock, "a")
    await a.look()
    target = TableWriter(TARGET, meta=META)
    writer = FencedWriter(target, a, timeout=TIMES.write_timeout)
    # Nothing listens there: a save past the fence must not even try to connect.
    clients = Clients({"us-east-1": f"http://127.0.0.1:{free_port()}"})
    try:
        home = await clients.json("dynamodb", "us-east-1")
        checkpoints = FencedCheckpoints(home, "control", a)
        await writer.put(insert("k1", 10), now=0.0)
        clock.now += TIMES.fence_after

        with pytest.raises(LeaseLost):
            await writer.put(insert("k2", 11), now=0.0)
        with pytest.raises(LeaseLost):
            await checkpoints.save("orders", Checkpoint("s1", TARGET, "11", False))
    finally:
        await clients.aclose()

    assert [w.sequence_number for w in target.writes] == ["10"]
    assert target.attempts == 1
