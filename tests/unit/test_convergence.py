"""Every region converges on the last-writer-wins winner over random histories with faults.

The model (``chaos.model``) runs OUR pure rules; the checker (``chaos.checker``) drains each
history and checks it. The teeth tests break one rule of DESIGN §3 and §4 at a time and demand
that some history notices: a checker that passes a broken rule proves nothing.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence

import pytest
from pydantic import TypeAdapter

import chaos.rules
from chaos.histories import mode_for, run_history
from chaos.regions import META, Record
from chaos.rules import Rules, selecting
from chaos.verdict import Result
from replicator.apply.rule import decide
from replicator.apply.selection import Selection
from replicator.config.filters import Filter
from replicator.models import Change, Incoming, ItemKey, Mode, Outcome, Stored
from replicator.stream.records import Skip, coalesce, to_change

HISTORIES = 600
TEETH_HISTORIES = 300
RunsPerKey = dict[ItemKey, list[Change]]
CONVERGENCE = frozenset({"diverged", "not-lww", "echo", "regression"})


def report(results: list[Result]) -> str:
    seeds = [result.seed for result in results]
    return f"{len(results)} histories failed, seeds {seeds[:20]}\n{results[0]}"


@pytest.mark.timeout(120)
def test_random_histories_converge_on_the_lww_winner() -> None:
    results = [run_history(seed, mode=mode_for(seed)) for seed in range(HISTORIES)]
    failed = [result for result in results if result.violations]
    assert not failed, report(failed)
    assert {result.mode for result in results} == set(Mode)
    # The histories did meet the faults they claim to survive.
    lines = "\n".join(line for result in results for line in result.trace)
    # A mapper's update landing on a replicated tombstone, healed (DESIGN §4 rule 7).
    faults = (" duplicate ", " crash ", " late ", " stall ", " re-create ", "(zombie)", "healed")
    faults += ("left to the page read ahead",)
    for fault in faults:
        assert fault in lines, fault
    assert re.search(r"ttl expiry \S+ \S+ tombstone", lines)
    assert re.search(r"ttl expiry \S+ \S+ v\d", lines)


@pytest.mark.timeout(10)
def test_a_seed_replays_the_same_history() -> None:
    first = run_history(7, mode=Mode.ACTIVE_ACTIVE)
    again = run_history(7, mode=Mode.ACTIVE_ACTIVE)
    assert first.trace == again.trace
    assert len(first.trace) > 40


@pytest.mark.timeout(30)
def test_a_failure_names_its_seed_the_broken_rule_and_how_to_replay_it() -> None:
    rules = Rules(decide=unpadded_seq)
    seed = first_caught(rules)
    assert seed is not None
    failure = run_history(seed, mode=mode_for(seed), rules=rules)
    text = str(failure)
    assert f"history seed {seed} ({mode_for(seed)}) failed:" in text
    assert f"python -m chaos.checker --seed {seed} --histories 1" in text
    assert "[diverged]" in text or "[not-lww]" in text
    assert all(line in text for line in failure.trace)


@pytest.mark.timeout(10)
def test_the_regression_metric_ignores_a_redelivered_create() -> None:
    # put v1, delete it, deliver the batch twice: the second delivery of the create meets
    # the tombstone; that is at-least-once delivery, not an application going back.
    result = run_history(3354, mode=Mode.ACTIVE_ACTIVE, steps=3)
    assert any("again" in line and "re-create v1" in line for line in result.trace)
    assert not result.violations, str(result)


# -- teeth: each rule, broken on purpose, must make some history fail -----------------------


def last_change_wins(changes: Iterable[Change]) -> dict[ItemKey, list[Change]]:
    """Coalescing across a REMOVE: a key's whole batch becomes its last change."""
    per_key: dict[ItemKey, list[Change]] = {}
    for change in changes:
        per_key[change.key] = [change]
    return per_key


def coalesce_raw_records(
    records: Iterable[Record], *, here: str, kv: bool = False
) -> dict[ItemKey, list[Change]]:
    """Coalescing before filtering: a run of records becomes its last record, then filter."""
    runs: dict[str, list[Record]] = {}
    for record in records:
        run = runs.setdefault(record["dynamodb"]["Keys"]["pk"]["S"], [])
        if run and "REMOVE" not in (run[-1]["eventName"], record["eventName"]):
            run[-1] = record
        else:
            run.append(record)
    kept = [record for run in runs.values() for record in run]
    return chaos.rules.filter_then_coalesce(kept, here=here)


def no_echo_filter(
    records: Iterable[Record], *, here: str, kv: bool = False
) -> dict[ItemKey, list[Change]]:
    """Sends what other regions wrote too, as if it had been written here."""
    changes: list[Change] = []
    for record in records:
        body = record["dynamodb"]
        sent = record
        if "NewImage" in body:
            new = {k: v for k, v in body["NewImage"].items() if not k.startswith(META.prefix)}
            sent = {**record, "dynamodb": {**body, "NewImage": new}}
        change = to_change(sent, here=here, meta=META)
        if not isinstance(change, Skip):
            changes.append(change)
    return coalesce(changes)


def without_fence(stored: Stored | None, incoming: Incoming, *, here: str, mode: Mode) -> Outcome:
    """The stream order is ignored: a stored seq of "" is older than any incoming one."""
    unfenced = dataclasses.replace(stored, seq="") if stored is not None else None
    return decide(unfenced, incoming, here=here, mode=mode)


def unpadded_seq(stored: Stored | None, incoming: Incoming, *, here: str, mode: Mode) -> Outcome:
    """Sequence numbers compared as strings without the padding: "100" < "99"."""
    short = dataclasses.replace(stored, seq=stored.seq.lstrip("0")) if stored else None
    return decide(
        short, dataclasses.replace(incoming, seq=incoming.seq.lstrip("0")), here=here, mode=mode
    )


def unguarded_local_tombstone(
    stored: Stored | None, incoming: Incoming, *, here: str, mode: Mode
) -> Outcome:
    """The local tombstone (the only write whose origin is the target) goes in unconditionally."""
    if incoming.origin == here:
        return Outcome.APPLIED
    return decide(stored, incoming, here=here, mode=mode)


def zombies_as_tombstones(
    records: Iterable[Record], *, here: str, kv: bool = False
) -> dict[ItemKey, list[Change]]:
    """Before DESIGN §4 rule 7: any item flagged ``_rep_deleted`` was taken for a tombstone."""
    kept = []
    for record in records:
        image = record["dynamodb"].get("NewImage") or record["dynamodb"].get("OldImage")
        if META.deleted not in image:
            kept.append(record)
    return chaos.rules.filter_then_coalesce(kept, here=here)


def ahead_across_anything(run: Sequence[Change], following: Sequence[Change]) -> bool:
    """A run left to the page read ahead whatever it holds: REMOVEs, re-creates, heals."""
    return bool(following)


BROKEN = {
    "coalesce before filtering echoes": Rules(batch=coalesce_raw_records),
    "no echo filter": Rules(batch=no_echo_filter),
    "decide without the fence": Rules(decide=without_fence),
    "unpadded sequence numbers": Rules(decide=unpadded_seq),
    "local tombstone not guarded": Rules(decide=unguarded_local_tombstone),
    "no local tombstone (rule 6)": Rules(local_tombstones=False),
    "zombies not healed (rule 7)": Rules(heal_zombies=False),
    "zombies taken for tombstones (rule 7)": Rules(batch=zombies_as_tombstones),
    "coalescing ahead across a REMOVE or a flag": Rules(ahead=ahead_across_anything),
}


def first_caught(rules: Rules | None = None) -> int | None:
    """The first seed whose history shows a convergence violation under ``rules``."""
    for seed in range(TEETH_HISTORIES):
        kinds = {v.kind for v in run_history(seed, mode=mode_for(seed), rules=rules).violations}
        if kinds & CONVERGENCE:
            return seed
    return None


@pytest.mark.timeout(60)
@pytest.mark.parametrize("rules", BROKEN.values(), ids=BROKEN.keys())
def test_the_checker_catches_a_broken_rule(rules: Rules) -> None:
    assert first_caught(rules) is not None, f"none of {TEETH_HISTORIES} histories noticed"


@pytest.mark.timeout(60)
def test_the_checker_catches_coalescing_across_a_remove(monkeypatch: pytest.MonkeyPatch) -> None:
    # The default rules reach the real coalesce through chaos.rules: patch it there.
    monkeypatch.setattr(chaos.rules, "coalesce", last_change_wins)
    assert first_caught() is not None, f"none of {TEETH_HISTORIES} histories noticed"


# A one-way pair replicating only tagged items: a put without a tag moves its key out of
# the filter, one with a tag (or an update keeping it) moves it back in.
TAGGED = Selection(filter=TypeAdapter(Filter).validate_python({"attribute": "tag", "exists": True}))
ONE_WAY_SEEDS = [seed for seed in range(2 * TEETH_HISTORIES) if mode_for(seed) is Mode.ONE_WAY]


@pytest.mark.timeout(120)
def test_one_way_histories_with_a_filter_leave_filter_of_source_in_every_target() -> None:
    results = [run_history(s, mode=Mode.ONE_WAY, rules=selecting(TAGGED)) for s in ONE_WAY_SEEDS]
    failed = [result for result in results if result.violations]
    assert not failed, report(failed)
    lines = "\n".join(line for result in results for line in result.trace)
    # Writes filtered out became tombstones over live copies, and re-creates still won.
    assert re.search(r"tombstone v\d+ seq \d+ over v\d+ \S+ from \S+: applied", lines)
    assert " re-create " in lines


def tombstones_without_recreate(
    records: Iterable[Record], *, here: str, kv: bool = False
) -> RunsPerKey:
    """Filtered-out writes applied as deletes that forget they were re-creates."""
    runs = chaos.rules.filter_then_coalesce(records, here=here, selection=TAGGED)
    return {
        key: [
            dataclasses.replace(c, incoming=dataclasses.replace(c.incoming, recreate=False))
            if c.incoming.tombstone
            else c
            for c in run
        ]
        for key, run in runs.items()
    }


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "rules",
    [
        pytest.param(Rules(selection=TAGGED), id="no filter applied"),
        pytest.param(
            Rules(batch=tombstones_without_recreate, selection=TAGGED), id="re-create flag lost"
        ),
    ],
)
def test_the_checker_catches_a_broken_filter(rules: Rules) -> None:
    caught = next(
        (s for s in ONE_WAY_SEEDS if run_history(s, mode=Mode.ONE_WAY, rules=rules).violations),
        None,
    )
    assert caught is not None
