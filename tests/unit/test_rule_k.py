"""Rule K of DESIGN §4c as the pure function, case by case; active-active Kinesis pairs
follow §3 without the ``_rep_seq`` fence."""

from __future__ import annotations

from decimal import Decimal

import pytest

from replicator.apply.rule import decide, is_version_regression
from replicator.apply.rulek import RESOLVED, TIE, Verdict, decide_k, judge
from replicator.models import Incoming, Mode, Outcome, Stored, WireItem, stored_from_item
from tests.conflict_cases import META, A, B, kinesis_item, replicated

pytestmark = pytest.mark.timeout(10)

APPLIED, SUPERSEDED, DUPLICATE = Outcome.APPLIED, Outcome.SUPERSEDED, Outcome.DUPLICATE


def record(version: int, ts: int, event: str, *, tombstone: bool = False) -> Incoming:
    return Incoming(Decimal(version), tombstone, A, "", ts=ts, event_id=event)


RULE_K: list[tuple[str, WireItem | None, Incoming, Verdict]] = [
    ("nothing stored: written", None, record(1, 100, "e1"), APPLIED),
    (
        "stored without _rep_ts (backfilled or written locally): written",
        replicated(9, A),
        record(1, 100, "e1"),
        APPLIED,
    ),
    ("a later ts: written", kinesis_item(3, 100, "e1"), record(4, 200, "e2"), APPLIED),
    (
        "the version plays no part: a re-create reset to v1 with a later ts wins",
        kinesis_item(7, 100, "e1", tombstone=True),
        record(1, 200, "e2"),
        APPLIED,
    ),
    ("an earlier ts: superseded", kinesis_item(3, 200, "e2"), record(9, 100, "e1"), SUPERSEDED),
    (
        "the same record again: duplicate",
        kinesis_item(3, 100, "e1"),
        record(3, 100, "e1"),
        DUPLICATE,
    ),
    ("an equal ts of another record: a tie", kinesis_item(3, 100, "e1"), record(4, 100, "e2"), TIE),
    (
        "an equal ts over a resolved tie: a tie again (every meeting reads)",
        kinesis_item(4, 100, RESOLVED),
        record(4, 100, "e1"),
        TIE,
    ),
    (
        "a tombstone of an equal ts meets the live write: a tie",
        kinesis_item(3, 100, "e1"),
        record(3, 100, "e2", tombstone=True),
        TIE,
    ),
]


@pytest.mark.parametrize(
    ("stored", "incoming", "expected"), [c[1:] for c in RULE_K], ids=[c[0] for c in RULE_K]
)
def test_rule_k(stored: WireItem | None, incoming: Incoming, expected: Verdict) -> None:
    state = stored_from_item(stored, META)
    assert decide_k(state, incoming) is expected
    assert judge(state, incoming, here=B, mode=Mode.ONE_WAY) is expected


def test_active_active_kinesis_writes_follow_the_order_key_without_the_fence() -> None:
    # Live v4 from A stored; a tombstone v5 from A arrives. From a DynamoDB stream, a
    # lower sequence number means a late batch (the fence refuses it); from Kinesis,
    # delivery order means nothing, so the greater order key wins.
    stored = stored_from_item(replicated(4, A, seq_no=80), META)
    from_stream = Incoming(Decimal(5), True, A, f"{50:040d}")
    from_kinesis = Incoming(Decimal(5), True, A, "", ts=1, event_id="e")

    assert decide(stored, from_stream, here=B, mode=Mode.ACTIVE_ACTIVE) is SUPERSEDED
    assert judge(stored, from_kinesis, here=B, mode=Mode.ACTIVE_ACTIVE) is APPLIED
    # And no tie in active-active: an equal order key is a duplicate.
    same = Incoming(Decimal(4), False, A, "", ts=1, event_id="other")
    assert judge(stored, same, here=B, mode=Mode.ACTIVE_ACTIVE) is DUPLICATE


def test_an_active_active_kinesis_re_create_below_its_tombstone_is_a_regression_if_later() -> None:
    tombstone = Stored(Decimal(5), True, A, Decimal(5), "", ts=100, event="e1")
    later = Incoming(Decimal(1), False, A, "", recreate=True, ts=200, event_id="e2")
    replayed_create = Incoming(Decimal(1), False, A, "", recreate=True, ts=50, event_id="e0")

    assert is_version_regression(tombstone, later, here=B, mode=Mode.ACTIVE_ACTIVE)
    assert not is_version_regression(tombstone, replayed_create, here=B, mode=Mode.ACTIVE_ACTIVE)
