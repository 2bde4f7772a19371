"""The conflict rule (DESIGN §3) as one pure function.

The conditional PutItem in ``condition.py`` encodes the same rule; a property test
proves the two agree on a real (moto) table.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from replicator.aws.binaries import wire_deserializer
from replicator.models import Incoming, Meta, Mode, Outcome, Stored, WireItem, visible_item

# Order key of a state (version, is_tombstone, origin); a missing version sorts first.
OrderKey = tuple[Decimal, bool, str]
# What a reader sees of an item: its user attributes, or None for nothing (or a tombstone).
Visible = dict[str, Any] | None
_NO_VERSION = Decimal("-Infinity")


def decide(stored: Stored | None, incoming: Incoming, *, here: str, mode: Mode) -> Outcome:
    """Whether ``incoming`` replaces ``stored`` in the table of region ``here``.

    Returns APPLIED (write it), DUPLICATE (stored state already equals it) or
    SUPERSEDED (stored state is newer).

    A write from a Kinesis source (``incoming.ts`` set; active-active, one-way is rule K
    in ``rulek``) has no ``_rep_seq`` fence: Kinesis order is not the origin's write
    order, and a fence on ts diverged in the model (DESIGN §4c).
    """
    if stored is None or stored.version is None:
        return Outcome.APPLIED
    stored_origin = stored.origin(here)
    fenced = incoming.ts is None and stored.replicated and stored_origin == incoming.origin
    if mode is Mode.ONE_WAY and incoming.recreate and stored_origin == incoming.origin:
        # A re-create from the origin supersedes whatever that origin wrote before,
        # whatever the versions; only the stream order (the fence) can refuse it.
        return _by_seq(stored.seq, incoming.seq) if fenced else Outcome.APPLIED
    stored_key = order_key(stored, here=here)
    incoming_key = (incoming.version, incoming.tombstone, incoming.origin)
    if incoming_key == stored_key:
        return Outcome.DUPLICATE
    if incoming_key < stored_key:
        return Outcome.SUPERSEDED
    if fenced and not incoming.seq > stored.seq:
        return Outcome.SUPERSEDED
    return Outcome.APPLIED


def _by_seq(stored_seq: str, incoming_seq: str) -> Outcome:
    if incoming_seq > stored_seq:
        return Outcome.APPLIED
    if incoming_seq == stored_seq:
        return Outcome.DUPLICATE
    return Outcome.SUPERSEDED


def is_version_regression(
    stored: Stored | None, incoming: Incoming, *, here: str, mode: Mode
) -> bool:
    """Active-active contract breach: a re-create losing to its own origin's tombstone."""
    return (
        mode is Mode.ACTIVE_ACTIVE
        and incoming.recreate
        and stored is not None
        and stored.tombstone
        and stored.origin(here) == incoming.origin
        # Later in its origin's stream than the tombstone: a replay of the original
        # create (earlier in the stream) is just late, not a broken contract.
        and _later(stored, incoming)
        and decide(stored, incoming, here=here, mode=mode) is Outcome.SUPERSEDED
    )


def _later(stored: Stored, incoming: Incoming) -> bool:
    """Whether ``incoming`` was written after ``stored``: by the stream's order, or by the
    ts for a Kinesis source (a key's ts never decreases)."""
    if incoming.ts is None:
        return incoming.seq > stored.seq
    return stored.ts is None or incoming.ts > stored.ts


def order_key(stored: Stored, *, here: str) -> OrderKey:
    """The §3 order key of a state stored in region ``here``."""
    version = _NO_VERSION if stored.version is None else stored.version
    return (version, stored.tombstone, stored.origin(here))


def visible(item: WireItem | None, meta: Meta) -> Visible:
    """What a reader that skips tombstones sees of ``item``, as Python values (None: nothing).

    The one definition is ``models.visible_item``; verify, its bucket digests and the
    tests compare this.
    """
    seen = visible_item(item, meta)
    if seen is None:
        return None
    deserialize = wire_deserializer()
    return {k: deserialize(v) for k, v in seen.items()}
