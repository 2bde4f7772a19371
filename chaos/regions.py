"""The model's regions: what each holds, and how an item in it reads.

A region has a table (items in the wire format, as DynamoDB stores them) and a stream that
records every mutation as NEW_AND_OLD_IMAGES would; a lane is one replicator path between two
regions. ``visible`` and ``show`` are how the checker and the trace read an item.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from replicator.models import Meta, WireItem, is_tombstone, number
from replicator.stream.kv import Kv

REGIONS = ("ap-southeast-2", "eu-west-1", "us-east-1")
META = Meta(version="version")
# A worker that lost its lease can only still hold batches it read during its last lease.
LATE_BATCHES_KEPT = 6
SERVICE_IDENTITY = {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}

Record = dict[str, Any]
Visible = dict[str, dict[str, Any]]  # an item's user data: no _rep_ attributes


@dataclass(frozen=True, slots=True)
class Event:
    """An application write or delete; a TTL expiry of a live item is a delete too."""

    region: str
    key: str
    version: int
    tombstone: bool
    data: Visible | None  # what readers see after it; None for a delete

    @property
    def order(self) -> tuple[int, bool, str]:
        return (self.version, self.tombstone, self.region)


@dataclass
class Region:
    name: str
    next_seq: int
    table: dict[str, WireItem] = field(default_factory=dict)
    stream: list[Record] = field(default_factory=list)
    # SequenceNumber -> region whose write the mutation carries: ground truth, not metadata.
    origins: dict[str, str] = field(default_factory=dict)


@dataclass
class Lane:
    """One replicator path, source stream -> target table, with its own checkpoint.

    ``source == target`` is the local lane that writes this region's own tombstones and
    heals its zombies.
    """

    source: str
    target: str
    checkpoint: int = 0  # index of the first unread record of the source stream
    stalled_until: int = -1
    done: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=LATE_BATCHES_KEPT))
    # kv of runs left to the page read ahead, per key, for the key's next run to carry
    # (``applier._hand_kv_on``); held in memory, so a crash forgets it.
    handed: dict[str, Kv] = field(default_factory=dict)

    def __str__(self) -> str:
        target = "self" if self.source == self.target else self.target
        return f"{self.source}->{target}"


def user_data(item: WireItem) -> Visible:
    return {name: value for name, value in item.items() if not name.startswith(META.prefix)}


def visible(item: WireItem | None) -> Visible | None:
    """What a reader who skips ``_rep_deleted`` items (as the README says) sees.

    Stricter than a tombstone (``is_tombstone``): an unhealed zombie is invisible too, so
    a history converges only once every zombie is healed.
    """
    if item is None or META.deleted in item:
        return None
    return user_data(item)


def version_of(item: WireItem) -> int:
    value = number(item.get(META.version))
    return 0 if value is None else int(value)


def show(item: WireItem | Visible | None) -> str:
    if item is None:
        return "absent"
    if is_tombstone(item, META):
        return f"tombstone v{version_of(item)}"
    data = item.get("data", {}).get("S", "?")
    zombie = " (zombie)" if META.deleted in item else ""
    return f"v{version_of(item)} {data}{zombie}"
