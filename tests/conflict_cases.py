"""The conflict table of DESIGN §3 as data, shared by the pure-rule and the moto tests.

Regions are chosen so that the table's meaning holds in string order: C < A < B
("B wins (greater origin)"). A stored item written by the replicator carries
``_rep_`` metadata with its origin; an item "written locally" has none, and its
origin is the region it is stored in (the case's ``here``).

Stored items are given without their key; the tests add it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from replicator.models import Incoming, Meta, Mode, Outcome, WireItem, pad_seq

A, B, C = "eu-west-1", "us-east-1", "ap-southeast-2"
assert C < A < B, "the table's tie-breaks rely on this order"

META = Meta(version="version")
STORED_PAYLOAD = {"payload": {"S": "stored"}}

APPLIED, SUPERSEDED, DUPLICATE = Outcome.APPLIED, Outcome.SUPERSEDED, Outcome.DUPLICATE


def seq(n: int) -> str:
    return pad_seq(str(n))


def replicated(
    version: int,
    origin: str,
    *,
    seq_no: int = 10,
    tombstone: bool = False,
    local_version: int | None = None,
) -> WireItem:
    """An item the replicator wrote from ``origin``.

    ``local_version``: the application changed it here since (UpdateItem keeps the
    metadata), so ``_rep_version`` no longer equals the version.
    """
    item: WireItem = {
        META.version: {"N": str(version if local_version is None else local_version)},
        META.origin: {"S": origin},
        META.rep_version: {"N": str(version)},
        META.seq: {"S": seq(seq_no)},
    }
    if tombstone:
        item[META.deleted] = {"BOOL": True}
        item[META.expires] = {"N": "1700604800"}
    else:
        item.update(STORED_PAYLOAD)
    return item


def kinesis_item(version: int, ts: int, event: str, *, tombstone: bool = False) -> WireItem:
    """An item the replicator wrote from a Kinesis record (``_rep_ts``, ``_rep_event``)."""
    item = replicated(version, A, tombstone=tombstone)
    del item[META.seq]
    item[META.ts] = {"N": str(ts)}
    item[META.event] = {"S": event}
    return item


def zombie(version: int, origin: str, *, seq_no: int = 10) -> WireItem:
    """A tombstone v``version`` from ``origin`` that an application's UpdateItem (condition
    version = v, SET version = v+1) changed here: ``_rep_deleted`` stays (DESIGN §4 rule 7).
    """
    item = replicated(version, origin, seq_no=seq_no, tombstone=True, local_version=version + 1)
    item["amount"] = {"N": "7"}
    return item


def local(version: int | None, *, version_type: str = "N") -> WireItem:
    """An item the application wrote in the target region: no ``_rep_`` attributes."""
    item: WireItem = dict(STORED_PAYLOAD)
    if version is not None:
        item[META.version] = {version_type: str(version)}
    return item


def live(version: int, origin: str, seq_no: int = 20, *, recreate: bool = False) -> Incoming:
    return Incoming(Decimal(version), False, origin, seq(seq_no), recreate)


def tombstone(version: int, origin: str, seq_no: int = 20) -> Incoming:
    return Incoming(Decimal(version), True, origin, seq(seq_no))


def recreate(version: int, origin: str, seq_no: int = 20) -> Incoming:
    return live(version, origin, seq_no, recreate=True)


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    mode: Mode
    stored: WireItem | None
    incoming: Incoming
    here: str  # the target region, whose table holds ``stored``
    expected: Outcome
    version_regression: bool = False  # active-active: counted and logged
    row: int | None = None  # the row of DESIGN §3 this case shows; None: an edge case

    @property
    def id(self) -> str:
        return f"{self.mode}: {self.name}"


def _any_mode(
    name: str,
    stored: WireItem | None,
    incoming: Incoming,
    here: str,
    expected: Outcome,
    *,
    row: int | None = None,
) -> list[Case]:
    return [Case(name, mode, stored, incoming, here, expected, row=row) for mode in Mode]


DESIGN_TABLE: list[Case] = [
    # 1 | any | nothing | live v3 from A | written |
    *_any_mode("nothing stored, live v3 A: written", None, live(3, A), C, APPLIED, row=1),
    # 2 | any | live v3 A | live v3 A (redelivery) | duplicate, no write |
    *_any_mode(
        "live v3 A, redelivered live v3 A: duplicate",
        replicated(3, A, seq_no=10),
        live(3, A, 10),
        C,
        DUPLICATE,
        row=2,
    ),
    # 3 | any | live v5 A | live v4 A (late) | superseded, no write |
    *_any_mode(
        "live v5 A, late live v4 A: superseded",
        replicated(5, A, seq_no=20),
        live(4, A, 10),
        C,
        SUPERSEDED,
        row=3,
    ),
    # 4 | any | live v3 A | tombstone v3 A (REMOVE of v3) | tombstone written |
    *_any_mode(
        "live v3 A, tombstone v3 A: tombstone written",
        replicated(3, A, seq_no=10),
        tombstone(3, A, 20),
        C,
        APPLIED,
        row=4,
    ),
    # 5 | any | tombstone v5 A | live v4 B (late, other region) | superseded: no resurrection |
    *_any_mode(
        "tombstone v5 A, late live v4 B: superseded, no resurrection",
        replicated(5, A, tombstone=True),
        live(4, B, 30),
        C,
        SUPERSEDED,
        row=5,
    ),
    # 6 | any | live v3 A | live v3 B | B wins (greater origin), in every region |
    # In C the stored v3 came from A; in A it was written there; in B, B's own v3
    # meets A's.
    *_any_mode(
        "live v3 A, live v3 B: B wins in C", replicated(3, A), live(3, B), C, APPLIED, row=6
    ),
    *_any_mode(
        "live v3 written in A, live v3 B: B wins in A", local(3), live(3, B), A, APPLIED, row=6
    ),
    *_any_mode(
        "live v3 written in B, live v3 A: B wins in B", local(3), live(3, A), B, SUPERSEDED, row=6
    ),
    # 7 | any | live v3 written locally (no _rep_ attrs) | live v4 A | written |
    *_any_mode(
        "live v3 written locally, live v4 A: written", local(3), live(4, A), B, APPLIED, row=7
    ),
    # 8 | any | live v4 A, seq 80 | tombstone v5 A, seq 50 (late batch of an old worker)
    #   | superseded (fence) |
    *_any_mode(
        "live v4 A seq 80, tombstone v5 A seq 50: superseded (fence)",
        replicated(4, A, seq_no=80),
        tombstone(5, A, 50),
        C,
        SUPERSEDED,
        row=8,
    ),
    # 9 | one-way | live v4 A, seq 80 | re-create v1 A, seq 60 (late) | superseded (fence) |
    Case(
        "live v4 A seq 80, late re-create v1 A seq 60: superseded (fence)",
        Mode.ONE_WAY,
        replicated(4, A, seq_no=80),
        recreate(1, A, 60),
        C,
        SUPERSEDED,
        row=9,
    ),
    # 10 | one-way | tombstone v5 A | re-create v1 A | written |
    Case(
        "tombstone v5 A, re-create v1 A: written",
        Mode.ONE_WAY,
        replicated(5, A, seq_no=50, tombstone=True),
        recreate(1, A, 60),
        C,
        APPLIED,
        row=10,
    ),
    # 11 | one-way | live v5 A | re-create v1 A (delete + re-create coalesced) | written |
    Case(
        "live v5 A, coalesced delete + re-create v1 A: written",
        Mode.ONE_WAY,
        replicated(5, A, seq_no=50),
        recreate(1, A, 60),
        C,
        APPLIED,
        row=11,
    ),
    # 12 | active-active | tombstone v5 A | re-create v1 A | superseded, regression counted |
    Case(
        "tombstone v5 A, re-create v1 A: superseded, regression counted",
        Mode.ACTIVE_ACTIVE,
        replicated(5, A, seq_no=50, tombstone=True),
        recreate(1, A, 60),
        C,
        SUPERSEDED,
        version_regression=True,
        row=12,
    ),
    # 13 | active-active | tombstone v5 A | re-create v6 A | written |
    Case(
        "tombstone v5 A, re-create v6 A: written",
        Mode.ACTIVE_ACTIVE,
        replicated(5, A, seq_no=50, tombstone=True),
        recreate(6, A, 60),
        C,
        APPLIED,
        row=13,
    ),
    # 14 | active-active | "zombie" here: _rep_deleted, version 6, _rep_version 5 (a local
    #   UpdateItem landed on a tombstone v5) | live v6 B | zombie is live v6 here: B wins
    #   only if B > here |
    Case(
        "zombie v6 in A (tombstone v5 C updated), live v6 B: B > A, written",
        Mode.ACTIVE_ACTIVE,
        zombie(5, C),
        live(6, B),
        A,
        APPLIED,
        row=14,
    ),
    Case(
        "zombie v6 in B (tombstone v5 C updated), live v6 A: A < B, superseded",
        Mode.ACTIVE_ACTIVE,
        zombie(5, C),
        live(6, A),
        B,
        SUPERSEDED,
        row=14,
    ),
]

EDGE_CASES: list[Case] = [
    # "an item stored without the version attribute counts as older than anything"
    *_any_mode("stored without a version, live v0 A: written", local(None), live(0, A), C, APPLIED),
    *_any_mode(
        "stored without a version, tombstone v0 A: written",
        local(None),
        tombstone(0, A),
        B,
        APPLIED,
    ),
    *_any_mode(
        "stored version is a string, live v1 A: written",
        local(7, version_type="S"),
        live(1, A),
        C,
        APPLIED,
    ),
    # Changed locally after replication: its origin is the target region, so no fence
    # on A's sequence numbers and no re-create exception for A.
    *_any_mode(
        "v3 A changed to v4 in C, live v4 A seq 50: A > C, written (no fence)",
        replicated(3, A, seq_no=80, local_version=4),
        live(4, A, 50),
        C,
        APPLIED,
    ),
    *_any_mode(
        "v3 A changed to v4 in B, live v4 A: B > A, superseded",
        replicated(3, A, seq_no=10, local_version=4),
        live(4, A, 20),
        B,
        SUPERSEDED,
    ),
    Case(
        "v3 A changed to v4 in C, re-create v1 A: not A's state, superseded",
        Mode.ONE_WAY,
        replicated(3, A, seq_no=10, local_version=4),
        recreate(1, A, 20),
        C,
        SUPERSEDED,
    ),
    # Tie-break on origin against a local write: the target region is its origin.
    *_any_mode("live v3 written in C, live v3 A: C < A, written", local(3), live(3, A), C, APPLIED),
    *_any_mode(
        "live v3 written in B, tombstone v3 A: tombstone beats live, written",
        local(3),
        tombstone(3, A),
        B,
        APPLIED,
    ),
    # At equal versions a tombstone beats a live write whatever the origins.
    *_any_mode(
        "tombstone v3 A, live v3 B: tombstone stays, superseded",
        replicated(3, A, tombstone=True),
        live(3, B),
        C,
        SUPERSEDED,
    ),
    *_any_mode(
        "tombstone v3 B, tombstone v3 A: B wins, superseded",
        replicated(3, B, tombstone=True),
        tombstone(3, A),
        C,
        SUPERSEDED,
    ),
    *_any_mode(
        "tombstone v3 A, tombstone v3 B: B wins, written",
        replicated(3, A, tombstone=True),
        tombstone(3, B),
        C,
        APPLIED,
    ),
    # The fence holds for a greater version too, and only within one origin.
    *_any_mode(
        "live v4 A seq 80, live v5 A seq 80 (replay): superseded (fence)",
        replicated(4, A, seq_no=80),
        live(5, A, 80),
        C,
        SUPERSEDED,
    ),
    *_any_mode(
        "live v4 A seq 80, live v5 B seq 50: other origin, written",
        replicated(4, A, seq_no=80),
        live(5, B, 50),
        C,
        APPLIED,
    ),
    Case(
        "re-create v1 A seq 60, redelivered: duplicate",
        Mode.ONE_WAY,
        replicated(1, A, seq_no=60),
        recreate(1, A, 60),
        C,
        DUPLICATE,
    ),
    Case(
        "live v5 written in A, re-create v1 A into A: written",
        Mode.ONE_WAY,
        local(5),
        recreate(1, A),
        A,
        APPLIED,
    ),
    Case(
        "live v5 B, re-create v1 A: other origin, superseded",
        Mode.ONE_WAY,
        replicated(5, B),
        recreate(1, A),
        C,
        SUPERSEDED,
    ),
    # A zombie is a live write of the region that holds it (§3: the tombstone flag, like
    # the origin, counts only while _rep_version equals the version).
    *_any_mode(
        "zombie v6 in C, tombstone v6 A: tombstone beats live, written",
        zombie(5, A),
        tombstone(6, A),
        C,
        APPLIED,
    ),
    *_any_mode(
        "zombie v6 in C, tombstone v5 A (the delete it beat, again): superseded",
        zombie(5, A, seq_no=20),
        tombstone(5, A, 20),
        C,
        SUPERSEDED,
    ),
    *_any_mode(
        "zombie v6 in C, live v6 B: greater origin, written",
        zombie(5, A),
        live(6, B),
        C,
        APPLIED,
    ),
    *_any_mode(
        "zombie v6 in B, live v6 A: here is the greater origin, superseded",
        zombie(5, A),
        live(6, A),
        B,
        SUPERSEDED,
    ),
    *_any_mode(
        "zombie v6 in C from A seq 80, live v7 A seq 50: not A's state, no fence, written",
        zombie(5, A, seq_no=80),
        live(7, A, 50),
        C,
        APPLIED,
    ),
]

CASES: list[Case] = DESIGN_TABLE + EDGE_CASES
