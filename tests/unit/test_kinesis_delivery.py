"""The Kinesis bridge's decisions: every change comes out, ts keeps DynamoDB's promise."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.demo.kinesis_delivery import Delivery, Put, Schedule, Stamper

pytestmark = pytest.mark.timeout(60)

shares = st.floats(min_value=0.0, max_value=1.0)
deliveries = st.builds(
    Delivery,
    seed=st.integers(0, 1000),
    duplicate_share=shares,
    hold_share=shares,
    spread=st.integers(1, 20),
    replay_every=st.integers(0, 10),
    replay_window=st.integers(1, 5),
    max_pending=st.integers(0, 8),
)
# A history: the key of each change, in write order.
histories = st.lists(st.integers(0, 4), max_size=60)


def deliver(delivery: Delivery, keys: list[int]) -> tuple[list[Put], list[Put], int]:
    """The changes admitted, what came out (admit, then flush), the most that ever waited."""
    schedule = Schedule(delivery, random.Random(delivery.seed))
    changes = [Put(f"k{key}", f"change {n}") for n, key in enumerate(keys)]
    out: list[Put] = []
    most = 0
    for change in changes:
        out += schedule.admit(change)
        most = max(most, schedule.pending)
    out += schedule.flush()
    assert schedule.pending == 0
    return changes, out, most


@settings(max_examples=300, deadline=None)
@given(deliveries, histories)
def test_every_change_comes_out_and_the_waiting_stays_bounded(
    delivery: Delivery, keys: list[int]
) -> None:
    changes, out, most = deliver(delivery, keys)
    assert set(out) == set(changes)
    assert most <= delivery.max_pending


@given(histories)
def test_by_default_each_change_comes_out_once_in_write_order(keys: list[int]) -> None:
    changes, out, _ = deliver(Delivery(), keys)
    assert out == changes


def test_a_held_change_comes_out_after_its_key_s_next_change() -> None:
    delivery = Delivery(hold_share=0.5, spread=50, seed=3)
    changes, out, _ = deliver(delivery, [n % 3 for n in range(300)])
    order = {put: out.index(put) for put in changes}
    later_first = [
        (a, b)
        for a, b in zip(changes, changes[3:], strict=False)  # the same key, one change apart
        if order[b] < order[a]
    ]
    assert later_first
    assert set(Counter(out).values()) == {1}


def test_a_duplicate_is_one_more_copy_of_a_change() -> None:
    changes, out, _ = deliver(Delivery(duplicate_share=0.3, seed=5), [n % 7 for n in range(200)])
    copies = Counter(out)
    assert set(copies.values()) == {1, 2}
    assert sorted(set(out), key=changes.index) == changes


def test_a_replay_puts_the_last_window_again() -> None:
    changes, out, _ = deliver(Delivery(replay_every=10, replay_window=4), [0] * 25)
    assert out[:14] == changes[:10] + changes[6:10]
    assert len(out) == 25 + 2 * 4


@given(st.lists(st.integers(0, 3), max_size=80), st.floats(0.0, 1.0), st.integers(0, 99))
def test_a_key_s_ts_never_decreases_and_ties_come_at_the_chosen_share(
    keys: list[int], tie_share: float, seed: int
) -> None:
    stamper = Stamper("MICROSECOND", tie_share, random.Random(seed))
    last: dict[int, int] = {}
    ties = 0
    for n, key in enumerate(keys):
        written = 1_700_000_000 + n // 10 / 1000  # moto's millisecond times, ten a millisecond
        ts = stamper.stamp(f"k{key}", written)
        assert ts >= last.get(key, 0)
        ties += ts == last.get(key)
        last[key] = ts
    assert ties == stamper.ties
    if tie_share == 0.0:
        assert ties == 0


def test_without_ties_every_change_of_a_key_has_its_own_ts() -> None:
    stamper = Stamper("MILLISECOND", 0.0, random.Random(0))
    stamps = [stamper.stamp("k", 1_700_000_000.0) for _ in range(5)]
    assert stamps == [1_700_000_000_000 + n for n in range(5)]
