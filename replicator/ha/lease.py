"""The lease that makes one process per source table the active one (DESIGN §6).

The lease is one control-table item per source table: ``owner``, ``counter`` (bumped
by every renewal) and an informational expiry. Every write to it is conditional on the
owner and counter last read, so at most one process takes or renews a given counter.

Time is never compared across machines. Each process measures on its own monotonic clock:

- the holder fences itself: it starts no target write or checkpoint once its last
  successful renewal was *sent* more than ``duration - write_timeout - margin`` ago, so
  its last write ends before ``duration`` has passed since the renewal landed;
- a taker waits ``duration`` after it last *saw* the counter move, which is after the
  renewal landed.

So a taker starts writing only after the previous holder's last write ended. A request
delayed beyond that (a frozen process past its own check) still cannot move an item
backwards: the ``_rep_seq`` fence of DESIGN §3 is the second line of defence.

The decisions are pure functions of what was read and when; ``LeaseKeeper`` does the I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Role(enum.StrEnum):
    ACTIVE = "active"
    STANDBY = "standby"


class LeaseState(enum.StrEnum):
    """Where one process stands with one table's lease (KCL's shard consumer, reduced)."""

    WATCHING = "watching"  # another process holds it: watch its counter, read nothing else
    HOLDING = "holding"  # ours and renewed recently enough to write
    FENCED = "fenced"  # ours on record, but the last renewal is too old to start a write
    RELEASED = "released"  # given up on shutdown


@dataclass(frozen=True, slots=True)
class LeaseTimes:
    duration: float  # how long a holder that stopped renewing keeps it
    write_timeout: float  # the longest one write or checkpoint may take
    margin: float  # slack for scheduling delays inside the holder

    @property
    def fence_after(self) -> float:
        """Seconds after a renewal was sent past which the holder starts no write."""
        return self.duration - self.write_timeout - self.margin

    @property
    def renew_every(self) -> float:
        """Renewal (and standby polling) interval: several tries before the fence closes."""
        return min(self.duration / 4, self.fence_after / 3)


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The lease item as stored; ``owner`` empty once released."""

    owner: str
    counter: int


@dataclass(frozen=True, slots=True)
class Sighting:
    """A lease item as a standby saw it, and since when (its monotonic clock) unchanged."""

    record: LeaseRecord | None  # None: no lease item yet
    since: float


def sight(previous: Sighting | None, record: LeaseRecord | None, now: float) -> Sighting:
    """The standby's view after reading ``record`` at ``now``: the clock restarts on a move."""
    if previous is not None and previous.record == record:
        return previous
    return Sighting(record, now)


def may_take(sighting: Sighting, now: float, times: LeaseTimes) -> bool:
    """Whether a standby may claim the lease it has been watching."""
    record = sighting.record
    if record is None or not record.owner:
        return True  # never held, or released by a holder that stopped writing first
    return now - sighting.since >= times.duration


def may_write(renewed_at: float | None, now: float, times: LeaseTimes) -> bool:
    """Whether the holder may start a target write or checkpoint (``renewed_at``: sent at)."""
    return renewed_at is not None and now - renewed_at < times.fence_after


def state_of(
    held: LeaseRecord | None, renewed_at: float | None, now: float, times: LeaseTimes
) -> LeaseState:
    """The state of a process holding ``held`` (None: not held) whose renewal was sent then."""
    if held is None:
        return LeaseState.WATCHING
    if not held.owner:
        return LeaseState.RELEASED
    return LeaseState.HOLDING if may_write(renewed_at, now, times) else LeaseState.FENCED


def role_of(state: LeaseState) -> Role:
    return Role.ACTIVE if state is LeaseState.HOLDING else Role.STANDBY
