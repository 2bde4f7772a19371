"""Values that flow through the pipeline: item metadata, changes, outcomes, targets, checkpoints."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

# A DynamoDB item or key in the low-level wire format: {"name": {"S": "value"}}.
WireItem = dict[str, dict[str, Any]]
# A key made hashable, for grouping changes per item: (("pk", "S", "a"), ...). Values are
# the wire's text (a binary's base64), so ``tools.scan.wire_key`` gives the key back exactly.
ItemKey = tuple[tuple[str, str, str], ...]

SEQ_DIGITS = 40


def pad_seq(sequence_number: str) -> str:
    """Zero-pad a stream SequenceNumber so that string order is numeric order."""
    return sequence_number.zfill(SEQ_DIGITS)


def item_key(keys: WireItem) -> ItemKey:
    """A hashable identity for the item whose key attributes are ``keys`` (S, N or B)."""
    if len(keys) == 1:  # a partition key alone: the common case, built without sorting
        ((name, attribute),) = keys.items()
        ((type_, value),) = attribute.items()
        return ((name, type_, str(value)),)
    parts = []
    for name in sorted(keys):
        ((type_, value),) = keys[name].items()
        parts.append((name, type_, str(value)))
    return tuple(parts)


class Mode(enum.StrEnum):
    ONE_WAY = "one-way"
    ACTIVE_ACTIVE = "active-active"


class Outcome(enum.StrEnum):
    APPLIED = "applied"
    SUPERSEDED = "superseded"
    DUPLICATE = "duplicate"
    DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True, slots=True)
class Meta:
    """Names of the metadata attributes, derived from the configured prefix."""

    version: str
    prefix: str = "_rep_"

    @property
    def origin(self) -> str:
        return f"{self.prefix}origin"

    @property
    def rep_version(self) -> str:
        return f"{self.prefix}version"

    @property
    def seq(self) -> str:
        return f"{self.prefix}seq"

    @property
    def deleted(self) -> str:
        return f"{self.prefix}deleted"

    @property
    def expires(self) -> str:
        return f"{self.prefix}expires"

    @property
    def kv(self) -> str:
        return f"{self.prefix}kv"

    @property
    def ts(self) -> str:
        """Kinesis pairs (DESIGN §4c): the writing record's ApproximateCreationDateTime, µs."""
        return f"{self.prefix}ts"

    @property
    def event(self) -> str:
        """Kinesis pairs: the writing record's eventID (``resolved`` after a tie read)."""
        return f"{self.prefix}event"


@dataclass(frozen=True, slots=True)
class Stored:
    """What the conflict rule needs to know about an item already in a table."""

    version: Decimal | None  # None: absent or not a number, older than anything
    tombstone: bool  # ``is_tombstone``: flagged, and ``_rep_version`` still the version
    rep_origin: str | None
    rep_version: Decimal | None
    seq: str  # padded; "" when absent
    # Kinesis pairs (DESIGN §4c): ``_rep_ts`` (µs, None when absent) and ``_rep_event``.
    ts: int | None = None
    event: str = ""

    @property
    def replicated(self) -> bool:
        """Written by the replicator and not changed locally since."""
        return (
            self.version is not None
            and self.rep_version == self.version
            and self.rep_origin is not None
        )

    def origin(self, here: str) -> str:
        """Region of the write that produced this state (``here`` for a local write)."""
        if self.replicated and self.rep_origin is not None:
            return self.rep_origin
        return here


@dataclass(frozen=True, slots=True)
class Incoming:
    """A write the replicator wants to apply to a target."""

    version: Decimal
    tombstone: bool
    origin: str
    seq: str  # padded; "" from a Kinesis source, which has no DynamoDB sequence number
    recreate: bool = False
    # Kinesis source only (DESIGN §4c): ApproximateCreationDateTime in µs and the eventID,
    # which rule K orders by; None for a DynamoDB Streams source.
    ts: int | None = None
    event_id: str = ""


def number(attribute: dict[str, Any] | None) -> Decimal | None:
    """The value of a wire-format number attribute, None when absent or not a number."""
    if attribute is None or "N" not in attribute:
        return None
    return Decimal(attribute["N"])


def is_tombstone(item: WireItem, meta: Meta) -> bool:
    """Whether ``item`` is a tombstone (DESIGN §3): flagged, and unchanged since.

    An application's UpdateItem keeps the attributes it does not name: one that lands
    on a tombstone raises the version and leaves ``_rep_deleted`` behind. Such a
    "zombie" is a live write, which ``_rep_version`` no longer matching tells.
    """
    if meta.deleted not in item:
        return False
    version = number(item.get(meta.version))
    return version is not None and number(item.get(meta.rep_version)) == version


def is_zombie(item: WireItem, meta: Meta) -> bool:
    """Flagged as deleted, but changed by an application since: a live item (§4 rule 7)."""
    return meta.deleted in item and not is_tombstone(item, meta)


def visible_item(item: WireItem | None, meta: Meta) -> WireItem | None:
    """What a reader that skips tombstones sees: user attributes, or None for nothing."""
    if item is None or is_tombstone(item, meta):
        return None
    return {k: v for k, v in item.items() if not k.startswith(meta.prefix)}


def stored_from_item(item: WireItem | None, meta: Meta) -> Stored | None:
    """Read the conflict-relevant state out of a stored item (None: nothing stored)."""
    if item is None:
        return None
    origin = item.get(meta.origin)
    seq = item.get(meta.seq)
    ts = number(item.get(meta.ts))
    event = item.get(meta.event)
    return Stored(
        version=number(item.get(meta.version)),
        tombstone=is_tombstone(item, meta),
        rep_origin=origin["S"] if origin and "S" in origin else None,
        rep_version=number(item.get(meta.rep_version)),
        seq=seq["S"] if seq and "S" in seq else "",
        ts=None if ts is None else int(ts),
        event=event["S"] if event and "S" in event else "",
    )


@dataclass(frozen=True, slots=True)
class Change:
    """One write to replicate: a live item (``item``) or a tombstone (``item`` is None).

    ``keys`` holds the key attributes; ``created_at`` is the stream record's
    ApproximateCreationDateTime in epoch seconds, used for lag.
    """

    keys: WireItem
    incoming: Incoming
    item: WireItem | None
    sequence_number: str
    created_at: float
    record: dict[str, Any]
    # A live write of this region that landed on a tombstone (a zombie, DESIGN §4
    # rule 7): this region's own table still flags it deleted until healed.
    heals_zombie: bool = False
    # A delete done by TTL (DESIGN §4 rule 4), which a pair may choose not to replicate.
    by_ttl: bool = False
    # Active-active only (DESIGN §4b): region -> greatest okey in this write's history,
    # merged over a coalesced run; None in one-way mode, which writes no ``_rep_kv``.
    kv: dict[str, Decimal] | None = None

    @property
    def key(self) -> ItemKey:
        return item_key(self.keys)

    @property
    def position(self) -> str:
        """Its place in its shard, padded: a Kinesis change has no DynamoDB ``seq``, but
        its Kinesis sequence number orders it within the shard all the same."""
        return self.incoming.seq or pad_seq(self.sequence_number)


@dataclass(frozen=True, slots=True)
class TargetRef:
    region: str
    table: str

    def __str__(self) -> str:
        return f"{self.region}/{self.table}"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    shard_id: str
    target: TargetRef
    sequence_number: str | None  # last record applied or dead-lettered; None: nothing yet
    shard_ended: bool
    stream_arn: str = ""  # the stream the shard belongs to
    updated_at: float | None = None  # when it was saved (epoch seconds), as loaded
