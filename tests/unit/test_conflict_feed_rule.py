"""DESIGN §4b as the pure functions: ``_rep_kv`` and when a conflict-feed entry is written.

Region T is the table's region, P another region. Each test is one case (A, B1, B2, B3)
or one of its "no entry" conditions, in §4b's words.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replicator.apply.conflict import Loss, lost_write
from replicator.models import Change, Meta
from replicator.pipeline.conflicts import conflict_entry
from replicator.stream.fake_records import stream_record
from replicator.stream.kv import Kv, change_kv, image_kv, merge, okey
from replicator.stream.records import coalesce, to_change

pytestmark = pytest.mark.timeout(20)

META = Meta(version="version")
T, P, Q = "eu-west-1", "us-east-1", "ap-southeast-2"
KEY = {"pk": "k"}


def rep(
    version: int, origin: str, *, tombstone: bool = False, kv: Kv | None = None
) -> dict[str, Any]:
    """Plain values of an item the replicator wrote from ``origin``."""
    item: dict[str, Any] = {
        "version": version,
        "_rep_origin": origin,
        "_rep_version": version,
        "_rep_seq": "1".zfill(40),
    }
    if tombstone:
        item["_rep_deleted"] = True
    if kv is not None:
        item["_rep_kv"] = kv
    return item


def app(version: int, *, kv: Kv | None = None) -> dict[str, Any]:
    """Plain values of an application's write (no replicator metadata, or a kept ``_rep_kv``)."""
    item: dict[str, Any] = {"version": version, "payload": f"app v{version}"}
    if kv is not None:
        item["_rep_kv"] = kv
    return item


def stored(values: dict[str, Any]) -> dict[str, Any]:
    record = stream_record("INSERT", KEY, new=values)
    image: dict[str, Any] = record["dynamodb"]["NewImage"]
    return image


def write_in(region: str, version: int, *, old: dict[str, Any] | None = None) -> Change:
    """An application write of ``version`` read from ``region``'s stream, with its kv."""
    record = stream_record("MODIFY" if old else "INSERT", KEY, new=app(version), old=old)
    return _with_kv(to_change(record, here=region, meta=META), region)


def delete_in(region: str, old: dict[str, Any]) -> Change:
    """An application's DeleteItem in ``region`` of the item ``old``, with its kv."""
    return _with_kv(
        to_change(stream_record("REMOVE", KEY, old=old), here=region, meta=META), region
    )


def _with_kv(change: object, region: str) -> Change:
    assert isinstance(change, Change)
    return dataclasses.replace(change, kv=change_kv(change, here=region, meta=META))


def sides(loss: Loss | None) -> tuple[tuple[str, int, bool], tuple[str, int, bool]] | None:
    if loss is None:
        return None
    return (
        (loss.loser.origin, int(loss.loser.version), loss.loser.tombstone),
        (loss.winner.origin, int(loss.winner.version), loss.winner.tombstone),
    )


# --- _rep_kv -----------------------------------------------------------------------------


def test_okey_puts_a_tombstone_above_the_live_write_it_deleted() -> None:
    assert okey(Decimal(3), False) == 6
    assert okey(Decimal(3), True) == 7


def test_a_records_kv_is_its_old_images_kv_plus_its_own_okey() -> None:
    old = rep(2, Q, kv={T: Decimal(2)})
    change = write_in(P, 3, old=old)
    assert change.kv == {T: Decimal(2), Q: Decimal(4), P: Decimal(6)}


def test_a_removes_okey_is_twice_the_old_version_plus_one() -> None:
    change = delete_in(P, app(4))
    assert change.kv == {P: Decimal(9)}


def test_an_images_kv_counts_a_local_write_under_the_region_it_is_stored_in() -> None:
    # An application's UpdateItem kept ``_rep_kv`` but changed the version: a local write.
    assert image_kv(stored(app(5, kv={Q: Decimal(4)})), region=T, meta=META) == {Q: 4, T: 10}
    assert image_kv(stored(rep(5, Q, tombstone=True)), region=T, meta=META) == {Q: 11}


kvs = st.dictionaries(st.sampled_from([T, P, Q]), st.integers(0, 50).map(Decimal))


@given(kvs, kvs, kvs)
def test_merge_is_commutative_idempotent_and_monotone(a: Kv, b: Kv, c: Kv) -> None:
    assert merge((a, b)) == merge((b, a))
    assert merge((a, a)) == a
    assert merge((merge((a, b)), c)) == merge((a, merge((b, c))))
    ab = merge((a, b))
    assert all(ab[region] >= value for region, value in a.items())
    bigger = merge((a, c))  # a <= bigger pointwise, so merging b keeps the order
    assert all(merge((bigger, b))[region] >= value for region, value in ab.items())


# --- A: another region's write lands on this region's own write -------------------------


def test_a_a_write_from_p_applied_over_ts_write_it_does_not_know_loses_ts_write() -> None:
    loss = lost_write(write_in(P, 3), stored(app(2)), here=T, applied=True, meta=META)
    assert sides(loss) == ((T, 2, False), (P, 3, False))
    assert loss is not None and loss.loser.kv == {T: 4} and loss.winner.kv == {P: 6}


def test_a_no_entry_when_the_write_descends_from_ts_write() -> None:
    # P's write read T's v2 (replicated to P) and wrote v3 over it: no fork.
    change = write_in(P, 3, old=rep(2, T))
    assert lost_write(change, stored(app(2)), here=T, applied=True, meta=META) is None


def test_a_no_entry_when_the_write_is_refused() -> None:
    assert lost_write(write_in(P, 3), stored(app(4)), here=T, applied=False, meta=META) is None


def test_a_no_entry_over_a_third_regions_write() -> None:
    assert lost_write(write_in(P, 3), stored(rep(2, Q)), here=T, applied=True, meta=META) is None


def test_no_entry_when_nothing_is_stored() -> None:
    assert lost_write(write_in(P, 3), None, here=T, applied=True, meta=META) is None


# --- B: this region's local tombstone into its own table (T = source of X) ----------------


def test_b1_a_tombstone_applied_over_an_application_write_loses_that_write() -> None:
    tombstone = delete_in(T, app(3))
    loss = lost_write(tombstone, stored(app(2)), here=T, applied=True, meta=META)
    assert sides(loss) == ((T, 2, False), (T, 3, True))


def test_b1_a_refused_tombstone_loses_to_a_write_whose_kv_does_not_know_it() -> None:
    tombstone = delete_in(T, app(3))  # okey 7
    s = stored(app(4, kv={T: Decimal(4)}))  # an UpdateItem over an older state
    loss = lost_write(tombstone, s, here=T, applied=False, meta=META)
    assert sides(loss) == ((T, 3, True), (T, 4, False))


def test_b1_no_entry_when_the_write_has_no_kv_it_is_taken_for_a_re_create() -> None:
    tombstone = delete_in(T, app(3))
    assert lost_write(tombstone, stored(app(4)), here=T, applied=False, meta=META) is None


def test_b1_no_entry_when_the_writes_kv_knows_the_tombstone() -> None:
    tombstone = delete_in(T, app(3))
    s = stored(app(4, kv={T: Decimal(7)}))
    assert lost_write(tombstone, s, here=T, applied=False, meta=META) is None


def test_b2_a_tombstone_applied_over_ts_earlier_tombstone_it_does_not_know_loses_it() -> None:
    # The deleted item was P's v3, written without knowing T's tombstone of v2.
    tombstone = delete_in(T, rep(3, P))
    loss = lost_write(tombstone, stored(rep(2, T, tombstone=True)), here=T, applied=True, meta=META)
    assert sides(loss) == ((T, 2, True), (T, 3, True))


def test_b2_no_entry_when_the_deleted_item_knew_the_earlier_tombstone() -> None:
    tombstone = delete_in(T, rep(3, P, kv={T: Decimal(5)}))
    s = stored(rep(2, T, tombstone=True))
    assert lost_write(tombstone, s, here=T, applied=True, meta=META) is None


def test_b3_a_refused_tombstone_and_another_regions_write_that_do_not_know_each_other() -> None:
    tombstone = delete_in(T, app(3))  # kv {T: 7}
    s = stored(rep(4, P, kv={P: Decimal(8)}))
    loss = lost_write(tombstone, s, here=T, applied=False, meta=META)
    assert sides(loss) == ((T, 3, True), (P, 4, False))


def test_b3_no_entry_when_the_other_write_knows_the_tombstone() -> None:
    tombstone = delete_in(T, app(3))
    s = stored(rep(4, P, kv={T: Decimal(7)}))
    assert lost_write(tombstone, s, here=T, applied=False, meta=META) is None


def test_b3_no_entry_when_the_tombstone_knows_the_other_write() -> None:
    tombstone = delete_in(T, app(3, kv={P: Decimal(8)}))
    s = stored(rep(4, P))
    assert lost_write(tombstone, s, here=T, applied=False, meta=META) is None


def test_b_no_entry_when_the_tombstone_is_applied_over_another_regions_write() -> None:
    # That region reports it under A, when the tombstone reaches it.
    tombstone = delete_in(T, app(3))
    assert lost_write(tombstone, stored(rep(2, P)), here=T, applied=True, meta=META) is None


def test_a_coalesced_runs_kv_merges_every_record_of_the_run() -> None:
    # The first write knew Q's v4; the second is a whole-item PutItem that dropped ``_rep_kv``.
    first = write_in(P, 5, old=rep(4, Q))
    second = write_in(P, 6, old=app(5))
    (run,) = coalesce([first, second]).values()
    assert [c.incoming.version for c in run] == [6]
    assert run[0].kv == {Q: Decimal(8), P: Decimal(12)}


def test_an_entry_of_a_binary_key_is_keyed_as_one_of_a_string_key_is() -> None:
    binary = to_change(stream_record("INSERT", {"pk": b"\x00k"}, new=app(3)), here=P, meta=META)
    assert isinstance(binary, Change)
    change = dataclasses.replace(binary, kv=change_kv(binary, here=P, meta=META))
    loss = lost_write(change, stored(app(2)) | change.keys, here=T, applied=True, meta=META)
    assert loss is not None
    entry = conflict_entry(loss, change, table="t", detected_in=T, detected_at=0.0)
    assert entry["pk"]["S"].startswith("t#") and entry["sk"] == {"S": f"{T}#2#live"}


def test_b_is_only_for_tombstones_a_live_write_of_this_region_is_no_case() -> None:
    # A target in the source's own region would meet this region's live writes.
    assert lost_write(write_in(T, 3), stored(app(2)), here=T, applied=True, meta=META) is None
