"""Shard lineage: parents are read before their children (DESIGN §5)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replicator.stream.lineage import lineage_order, ready_shards
from replicator.stream.source import Shard

pytestmark = pytest.mark.timeout(30)


def shard(shard_id: str, parent: str | None = None, *, closed: bool = False) -> Shard:
    return Shard(shard_id, parent, "100", "200" if closed else None)


def ids(shards: list[Shard]) -> list[str]:
    return [s.shard_id for s in shards]


def test_a_single_shard_is_its_own_order() -> None:
    assert ids(lineage_order([shard("a")])) == ["a"]


def test_parents_come_before_children_whatever_the_listing_order() -> None:
    listed = [shard("c", "b"), shard("b", "a", closed=True), shard("a", closed=True)]
    assert ids(lineage_order(listed)) == ["a", "b", "c"]


def test_a_split_puts_both_children_after_the_parent_in_listing_order() -> None:
    listed = [shard("left", "p"), shard("p", closed=True), shard("right", "p")]
    assert ids(lineage_order(listed)) == ["p", "left", "right"]


def test_a_parent_trimmed_away_counts_as_finished() -> None:
    listed = [shard("child", "gone"), shard("other")]
    assert ids(lineage_order(listed)) == ["child", "other"]
    assert ids(ready_shards(listed, finished=set(), started=set())) == ["child", "other"]


def test_children_wait_until_their_parent_is_finished() -> None:
    listed = [shard("p", closed=True), shard("left", "p"), shard("right", "p")]
    assert ids(ready_shards(listed, finished=set(), started=set())) == ["p"]
    assert ids(ready_shards(listed, finished=set(), started={"p"})) == []
    assert ids(ready_shards(listed, finished={"p"}, started={"p"})) == ["left", "right"]
    assert ids(ready_shards(listed, finished={"p"}, started={"p", "left"})) == ["right"]


def test_a_shard_finished_before_a_restart_is_not_read_again() -> None:
    listed = [shard("p", closed=True), shard("child", "p")]
    assert ids(ready_shards(listed, finished={"p"}, started=set())) == ["child"]


def test_a_repeated_listing_keeps_the_first() -> None:
    first, second = shard("a"), shard("a", "x")
    assert lineage_order([first, second]) == [first]


def test_a_parent_cycle_is_kept_not_dropped() -> None:
    listed = [shard("root"), shard("x", "y"), shard("y", "x")]
    assert ids(lineage_order(listed)) == ["root", "x", "y"]


@st.composite
def shard_forests(draw: st.DrawFn) -> list[Shard]:
    count = draw(st.integers(min_value=0, max_value=30))
    shards: list[Shard] = []
    for index in range(count):
        # Parents are created before their children; index itself stands for one trimmed away.
        parent = draw(st.none() | st.integers(min_value=0, max_value=index))
        parent_id = None if parent is None else f"s{parent}" if parent < index else f"gone{index}"
        shards.append(shard(f"s{index}", parent_id))
    return draw(st.permutations(shards))


@given(shard_forests())
def test_order_is_a_permutation_with_every_listed_parent_first(listed: list[Shard]) -> None:
    ordered = lineage_order(listed)
    assert sorted(ids(ordered)) == sorted(ids(listed))
    position = {s.shard_id: i for i, s in enumerate(ordered)}
    for s in ordered:
        if s.parent_id in position:
            assert position[s.parent_id] < position[s.shard_id]
    assert lineage_order(listed) == ordered
