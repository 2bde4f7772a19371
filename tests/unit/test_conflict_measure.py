"""The conflict feed's rule, run in the protocol model, against ground truth (DESIGN §4b).

``chaos.lineage`` knows each write's parent, so which writes were lost once a history has
drained; ``chaos.feed`` compares the entries the product's ``lost_write`` produced at every
apply with them. Issue 23 demands at least 99 % of forks reported and at most 2 % false
entries; the teeth tests take case B away, or the kv merge over a coalesced run, and
demand the checker sees the difference.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path

import pytest

from chaos import checker
from chaos.feed import FALSE_POSITIVES_AT_MOST, FORKS_REPORTED_AT_LEAST, Tally, judge, measure
from chaos.model import World
from chaos.regions import META, Lane, Record
from chaos.replication import advance, unread
from chaos.rules import Rules, filter_then_coalesce
from replicator.apply.conflict import Loss, lost_write
from replicator.models import Change, ItemKey, Meta, Mode, WireItem
from replicator.stream.kv import change_kv

HISTORIES = 300
AP, EU, US = "ap-southeast-2", "eu-west-1", "us-east-1"
KEY = "k"


def describe(tally: Tally) -> str:
    figures = {k: v for k, v in tally.as_json().items() if k not in ("missed", "false")}
    return f"{figures}\n" + "\n".join([*tally.missed, *tally.false])


def lane(world: World, source: str, target: str) -> Lane:
    return next(lane for lane in world.lanes if (lane.source, lane.target) == (source, target))


def drain(world: World) -> None:
    while pending := [lane for lane in world.lanes if unread(world, lane)]:
        for each in pending:
            advance(world, each, 100)


def judged(world: World) -> Tally:
    tally = Tally()
    judge(world, tally)
    return tally


@pytest.mark.timeout(10)
def test_a_write_overwritten_by_a_concurrent_one_is_lost_and_named() -> None:
    world = World(random.Random(1), mode=Mode.ACTIVE_ACTIVE, regions=(EU, US), rules=Rules())
    world.write(EU, "k", update=False)  # v1 from eu-west-1, concurrent with ...
    world.write(US, "k", update=False)  # ... v2 from us-east-1, which wins
    for lane in world.lanes:
        advance(world, lane, 10)
    world.read(EU, "k")
    world.write(EU, "k", update=True)  # v3 on us-east-1's v2: descends from the winner
    for lane in world.lanes:
        advance(world, lane, 10)

    lineage = world.lineage
    final = lineage.converged("k", [EU, US])
    assert final == 2
    assert lineage.line(final) == [2, 1]  # eu-west-1's update overwrote us-east-1's put
    assert [e.version for e in world.events] == [1, 2, 3]
    entries = list(lineage.entries.values())
    assert [(e.region, e.loss.loser.origin, e.loss.loser.version) for e in entries] == [
        (EU, EU, Decimal(1))
    ]
    assert entries[0].loss.winner.origin == US


@pytest.mark.timeout(10)
def test_a_delete_named_lost_to_a_re_create_after_its_tombstone_expired_is_not_lost() -> None:
    """Ground truth through an expired tombstone: the re-create descends from the delete.

    TTL removed us-east-1's tombstone first; the re-create there meets no item, so its kv
    knows nothing of the delete, and eu-west-1 (still holding its tombstone) names its
    delete lost. The delete is an ancestor of the converged item: a false entry, of the
    kind only TTL expiry produces."""
    world = World(random.Random(1), mode=Mode.ACTIVE_ACTIVE, regions=(EU, US), rules=Rules())
    world.write(EU, KEY, update=False)
    drain(world)
    world.delete(EU, KEY)
    drain(world)
    assert world.expire_tombstone(US, KEY)
    world.write(US, KEY, update=False)  # v2 over nothing
    drain(world)

    delete, recreate = 1, 2
    assert world.lineage.line(world.lineage.converged(KEY, [EU, US])) == [recreate, delete, 0]
    (entry,) = world.lineage.entries.values()
    assert (entry.region, entry.loser, entry.winner) == (EU, delete, recreate)
    tally = judged(world)
    assert (tally.false_positives, tally.through_expiry, tally.unexplained) == (1, 1, 0)


@pytest.mark.timeout(10)
def test_a_late_local_tombstone_of_a_region_that_wrote_past_it_is_not_lost() -> None:
    """The REMOVE gap: eu-west-1 deletes v1, writes v3 and deletes it before its local
    tombstones are written; us-east-1's concurrent v2 lands in the gap. The late local
    tombstone of v1 then meets v2 and neither knows the other (§4b B3): an entry, though
    eu-west-1's own later writes, which descend from that delete, win."""
    world = World(random.Random(1), mode=Mode.ACTIVE_ACTIVE, regions=(EU, US), rules=Rules())
    world.write(EU, KEY, update=False)  # v1
    world.write(US, KEY, update=False)  # v2, concurrent
    world.delete(EU, KEY)
    world.write(EU, KEY, update=False)  # v3, in the REMOVE gap
    world.delete(EU, KEY)
    advance(world, lane(world, US, EU), 10)  # v2 lands in the gap
    drain(world)

    lineage = world.lineage
    assert lineage.line(lineage.converged(KEY, [EU, US])) == [4, 3, 2, 0]
    false = [e for e in lineage.entries.values() if e.loser == 2]  # eu-west-1's delete of v1
    assert [(e.region, e.winner) for e in false] == [(EU, 1)]
    tally = judged(world)
    assert (tally.false_positives, tally.moved_on, tally.unexplained) == (1, 1, 0)


@pytest.mark.timeout(10)
def test_a_false_entry_is_explained_by_the_writes_the_rule_judged() -> None:
    """eu-west-1 deletes its own v2 and then us-east-1's v2 (landed in its REMOVE gap):
    two writes with the same entry side. us-east-1 names its v2 lost to the first delete;
    ap-southeast-2 continued that v2 and won, so the entry is a rescued loser. The second
    delete does descend from the loser: judging by the entry's sides alone took the
    winner for it and called the entry unexplained."""
    world = World(random.Random(1), mode=Mode.ACTIVE_ACTIVE, regions=(AP, EU, US), rules=Rules())
    world.write(EU, KEY, update=False)  # v1
    world.write(US, KEY, update=False)  # v2
    world.write(EU, KEY, update=False)  # v2, concurrent
    world.delete(EU, KEY)  # the first delete of a v2
    advance(world, lane(world, US, EU), 10)  # us-east-1's v2 lands in the REMOVE gap
    world.delete(EU, KEY)  # the second
    advance(world, lane(world, US, AP), 10)
    world.write(AP, KEY, update=False)  # v3 on us-east-1's v2
    advance(world, lane(world, EU, US), 10)
    drain(world)

    lineage = world.lineage
    assert lineage.line(lineage.converged(KEY, [AP, EU, US])) == [5, 1]
    (entry,) = [e for e in lineage.entries.values() if e.region == US]
    assert (entry.loser, entry.winner) == (1, 3)
    tally = judged(world)
    assert (tally.false_positives, tally.rescued, tally.unexplained) == (1, 1, 0), describe(tally)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("puts_keep_kv", [False, True], ids=["put-drops-kv", "put-keeps-kv"])
def test_the_feed_reports_nearly_every_fork(puts_keep_kv: bool) -> None:
    tally = measure(HISTORIES, puts_keep_kv=puts_keep_kv)
    assert tally.unjudged == tally.unconverged == 0, describe(tally)
    assert tally.forks > HISTORIES, describe(tally)  # the histories do conflict
    assert tally.fork_share >= FORKS_REPORTED_AT_LEAST, describe(tally)
    # Each loss is reported by one region; a redelivery collapses onto the same entry.
    assert tally.reported_twice == 0, describe(tally)
    assert tally.duplicates > 0, describe(tally)
    # Every false entry is of a kind the rule cannot avoid (chaos.feed says which): a kind
    # the checker cannot name is where a deviation from §4b would show.
    assert tally.unexplained == 0, describe(tally)


# DESIGN §4b's own count. Per 2 000 of these histories the share of false entries ranges
# 1.84-2.08 % with PutItem writers that drop ``_rep_kv`` (1.70-1.97 % with writers that keep
# it): the figure sits at issue 23's bound, so only a sample this large measures it.
ISSUE_HISTORIES = 4_000


@pytest.mark.timeout(120)
def test_at_most_two_percent_of_entries_name_a_write_that_was_not_lost() -> None:
    """Issue 23's bound, on the histories it describes: active-active writers, deletes,
    coalescing and replays, and no TTL expiry of tombstones (which no kv can see through,
    next test). Measured with PutItem writers that drop ``_rep_kv``, the worse kind: 1.96 %
    (1.84 % when they keep it); nearly all rescued losers, as in §4b's model."""
    tally = measure(ISSUE_HISTORIES, tombstone_expiry=False)
    assert tally.unjudged == tally.unconverged == tally.unexplained == 0, describe(tally)
    assert tally.false_share <= FALSE_POSITIVES_AT_MOST, describe(tally)
    assert tally.rescued >= 0.85 * tally.false_positives, describe(tally)
    assert tally.fork_share >= FORKS_REPORTED_AT_LEAST, describe(tally)


# With the checker's TTL expiry (a week passes between two rounds of writers, 70 % of the
# tombstones expire, each region's on its own) 2.9 % of entries are false over 4 000
# histories, 3.6 % over the first 300: a bound of its own, looser than issue 23's.
FALSE_POSITIVES_WITH_EXPIRY_AT_MOST = 0.04


@pytest.mark.timeout(60)
@pytest.mark.parametrize("puts_keep_kv", [False, True], ids=["put-drops-kv", "put-keeps-kv"])
def test_tombstones_ttl_removed_in_one_region_before_another_add_false_entries(
    puts_keep_kv: bool,
) -> None:
    """A re-create in a region whose tombstone expired meets no item: its kv forgets the
    delete, and a region still holding the tombstone names the delete lost. The same seeds
    without expiry have no such entry."""
    expiring = measure(HISTORIES, puts_keep_kv=puts_keep_kv)
    kept = measure(HISTORIES, puts_keep_kv=puts_keep_kv, tombstone_expiry=False)
    assert expiring.through_expiry >= 0.2 * expiring.false_positives, describe(expiring)
    assert kept.through_expiry == 0, describe(kept)
    assert expiring.false_share <= FALSE_POSITIVES_WITH_EXPIRY_AT_MOST, describe(expiring)


def without_case_b(
    change: Change, stored: WireItem | None, *, here: str, applied: bool, meta: Meta
) -> Loss | None:
    """The feed without case B: this region's own local tombstones never report."""
    if change.incoming.origin == here:
        return None
    return lost_write(change, stored, here=here, applied=applied, meta=meta)


@pytest.mark.timeout(60)
def test_without_case_b_the_checker_sees_forks_go_unreported() -> None:
    tally = measure(HISTORIES, rules=Rules(conflict=without_case_b))
    assert tally.fork_share < 0.95, describe(tally)


def last_record_kv(
    records: Iterable[Record], *, here: str, kv: bool = False
) -> dict[ItemKey, list[Change]]:
    """A coalesced run's kv from its last record only, not merged over the run."""
    runs = filter_then_coalesce(records, here=here)
    if not kv:
        return runs
    return {
        key: [dataclasses.replace(c, kv=change_kv(c, here=here, meta=META)) for c in run]
        for key, run in runs.items()
    }


@pytest.mark.timeout(60)
def test_a_run_kv_from_its_last_record_only_pairs_writes_with_their_ancestors() -> None:
    merged = measure(HISTORIES)
    last_only = measure(HISTORIES, rules=Rules(batch=last_record_kv))
    assert last_only.own_ancestor > 2 * merged.own_ancestor, describe(last_only)
    assert last_only.false_share > merged.false_share + 0.01, describe(last_only)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("expiry", [True, False], ids=["ttl-expiry", "no-tombstone-expiry"])
def test_the_checker_writes_the_feed_figures_as_json(tmp_path: Path, expiry: bool) -> None:
    path = tmp_path / "feed.json"
    flags = [] if expiry else ["--no-tombstone-expiry"]
    checker.main(["--feed", "--histories", "20", *flags, "--json", str(path)])
    document = json.loads(path.read_text())
    assert document["tombstone_expiry"] is expiry
    assert set(document["writers"]) == {"PutItem drops _rep_kv", "PutItem keeps _rep_kv"}
    figures = document["writers"]["PutItem drops _rep_kv"]
    assert figures["histories"] == 20
    assert figures["forks"] >= figures["forks_reported"] > 0
    assert figures["unexplained"] == 0
    assert (figures["through_expiry"] > 0) is expiry  # the first 20 seeds expire some
