"""Rule K (DESIGN §4c): the one-way rule for a Kinesis source, as one pure function.

Kinesis delivers a key's records in any order and more than once, without DynamoDB's
SequenceNumber; what orders them is the ts (ApproximateCreationDateTime, µs), which
never decreases for a key but may repeat. So the target stores ``_rep_ts`` and
``_rep_event`` and the version plays no part: apply iff nothing is stored or
``_rep_ts < ts``. An equal ts with another eventID is a **tie**: which of the two was
written last is unknown, and only the source item can tell (the writer reads it).

``condition.build_condition`` encodes the same rule; a property test proves that the
two agree on moto. ``judge`` is the one entry point for any change: rule K for a
one-way Kinesis change, ``rule.decide`` otherwise.
"""

from __future__ import annotations

import enum

from replicator.apply.rule import decide
from replicator.models import Incoming, Mode, Outcome, Stored

# ``_rep_event`` of an item written after a tie read: the source's state at that ts,
# which no record's eventID equals, so every later tie meeting reads again (§4c).
RESOLVED = "resolved"


class Tie(enum.Enum):
    """Refused at an equal ts by another record: the writer settles it from the source.

    Not an ``Outcome``: the metrics see what the resolved write became.
    """

    TIE = "tie"


TIE = Tie.TIE
Verdict = Outcome | Tie


def decide_k(stored: Stored | None, incoming: Incoming) -> Verdict:
    """Rule K for ``incoming`` (ts and eventID set) over ``stored``."""
    assert incoming.ts is not None, "rule K orders Kinesis changes only"
    if stored is None or stored.ts is None or stored.ts < incoming.ts:
        return Outcome.APPLIED
    if stored.ts > incoming.ts:
        return Outcome.SUPERSEDED
    if stored.event == incoming.event_id:
        return Outcome.DUPLICATE
    return TIE


def judge(stored: Stored | None, incoming: Incoming, *, here: str, mode: Mode) -> Verdict:
    """What writing ``incoming`` over ``stored`` in region ``here`` does, for any source."""
    if incoming.ts is not None and mode is Mode.ONE_WAY:
        return decide_k(stored, incoming)
    return decide(stored, incoming, here=here, mode=mode)
