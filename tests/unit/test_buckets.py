"""Bucket digests: equal visible states agree whatever the scan order; differences localise."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from replicator.apply.rule import visible
from replicator.models import Meta, WireItem, item_key
from replicator.tools.buckets import TableDigest, bucket_of, differing_buckets, passes
from tests.records import image

META = Meta(version="version")
pytestmark = pytest.mark.timeout(10)


def digest(items: list[WireItem]) -> TableDigest:
    table = TableDigest()
    for item in items:
        table.add(item_key({"pk": item["pk"]}), visible(item, META))
    return table


def test_same_visible_state_in_any_order_with_tombstones_and_metadata_agrees() -> None:
    source = [image(f"k{n}", n, note="x") for n in range(200)]
    target = [image(f"k{n}", n, origin="us-east-1", note="x") for n in range(200)]
    target.append(image("gone", 3, origin="us-east-1", tombstone=True))  # equals absence
    random.Random(1).shuffle(target)
    assert differing_buckets([digest(source), digest(target)]) == []


def test_equal_values_written_differently_agree() -> None:
    one: WireItem = {"pk": {"S": "a"}, "version": {"N": "1.0"}, "tags": {"SS": ["x", "y"]}}
    other: WireItem = {"pk": {"S": "a"}, "version": {"N": "1"}, "tags": {"SS": ["y", "x"]}}
    assert visible(one, META) == {"pk": "a", "version": Decimal(1), "tags": {"x", "y"}}
    assert differing_buckets([digest([one]), digest([other])]) == []


def test_only_the_buckets_of_differing_keys_differ() -> None:
    source = [image(f"k{n}", 1) for n in range(1000)]
    target = [*source[:500], image("k500", 2), *source[501:]]
    target.remove(source[700])
    found = differing_buckets([digest(source), digest(target)])
    assert found == sorted({bucket_of(item_key({"pk": {"S": k}})) for k in ("k500", "k700")})


def test_differing_buckets_are_compared_in_groups_that_fit_the_budget() -> None:
    tables = [digest([image(f"k{n}", 1) for n in range(3000)]), TableDigest()]
    groups = passes(differing_buckets(tables), tables, budget=500)
    assert sum(len(g) for g in groups) == len(differing_buckets(tables))
    assert all(sum(tables[0].counts[b] for b in g) <= 500 for g in groups)
    assert 6 <= len(groups) <= 8
