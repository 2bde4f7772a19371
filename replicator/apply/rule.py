"""The conflict rule (DESIGN §3) as one pure function.

The conditional PutItem in ``condition.py`` encodes the same rule; a property test
proves the two agree on a real (moto) table.
"""

from __future__ import annotations

from replicator.models import Incoming, Mode, Outcome, Stored


def decide(stored: Stored | None, incoming: Incoming, *, here: str, mode: Mode) -> Outcome:
    """Whether ``incoming`` replaces ``stored`` in the table of region ``here``.

    Returns APPLIED (write it), DUPLICATE (stored state already equals it) or
    SUPERSEDED (stored state is newer).
    """
    if stored is None or stored.version is None:
        return Outcome.APPLIED
    stored_origin = stored.origin(here)
    fenced = stored.replicated and stored_origin == incoming.origin
    if mode is Mode.ONE_WAY and incoming.recreate and stored_origin == incoming.origin:
        # A re-create from the origin supersedes whatever that origin wrote before,
        # whatever the versions; only the stream order (the fence) can refuse it.
        return _by_seq(stored.seq, incoming.seq) if fenced else Outcome.APPLIED
    stored_key = (stored.version, stored.tombstone, stored_origin)
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
        and incoming.seq > stored.seq
        and decide(stored, incoming, here=here, mode=mode) is Outcome.SUPERSEDED
    )
