"""What a pair replicates (README "What is replicated"): its item filter, its excluded
attributes and its TTL-delete policy, as pure decisions beside the conflict rule.

Each target holds ``filter(source)`` without the excluded attributes. The stream side
(``select``, called by ``batches.decode`` for the pipeline and the Lambda handler) turns
a write whose NewImage does not match into the delete of that version: the tombstone a
REMOVE of it would make, so the conflict rule orders it like any other write, and the
item comes back with its next matching version. The writer strips excluded attributes
(``strip``, in ``target_item``), whatever the path: stream, backfill, DLQ replay, repair.
Verify compares ``replica_of`` the source with ``as_seen`` of each target.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import Decimal

from replicator.config.filters import Filter, matches
from replicator.models import Change, WireItem, item_key, number
from replicator.stream.records import TTL_DELETE, Skip


@dataclass(frozen=True, slots=True)
class Selection:
    """One pair's choices; ``EVERYTHING`` (the default) replicates every item and attribute."""

    exclude: frozenset[str] = frozenset()
    filter: Filter | None = None
    skip_ttl_deletes: bool = False
    ttl_attribute: str | None = None
    # The heartbeat canary always travels: its arrival is how lag is measured.
    heartbeat_prefix: str | None = None

    def select(self, change: Change) -> Change | Skip:
        """What of ``change`` (from ``records.to_change``) is replicated."""
        if change.incoming.tombstone and self.skip_ttl_deletes and change.by_ttl:
            return TTL_DELETE
        return self.filtered(change)

    def filtered(self, change: Change) -> Change:
        """``change``, or the delete of its version when its image does not match."""
        if (
            self.filter is None
            or change.item is None
            or self._is_heartbeat(change.keys)
            or matches(self.filter, change.item)
        ):
            return change
        # The REMOVE of this version, re-create flag kept: a key deleted and re-created
        # outside the filter must still supersede its older self, or the next matching
        # version (the re-create's v2) would lose to the older tombstone.
        return dataclasses.replace(
            change, incoming=dataclasses.replace(change.incoming, tombstone=True), item=None
        )

    def keeps(self, image: WireItem) -> bool:
        """Whether targets hold the item whose current image is ``image``."""
        return self.filter is None or matches(self.filter, image)

    def strip(self, item: WireItem) -> WireItem:
        """``item`` without the excluded attributes."""
        if not self.exclude:
            return item
        return {name: value for name, value in item.items() if name not in self.exclude}

    def expired(self, item: WireItem, *, now: float) -> bool:
        """Past its TTL, with ttl_deletes: skip: absent on every side for verify."""
        if not self.skip_ttl_deletes or self.ttl_attribute is None:
            return False
        at = number(item.get(self.ttl_attribute))
        return at is not None and at < Decimal(str(now))

    def replica_of(self, item: WireItem | None, *, now: float) -> WireItem | None:
        """What a target should hold of the source's ``item`` (None: nothing)."""
        if item is None or self.expired(item, now=now) or not self.keeps(item):
            return None
        return self.strip(item)

    def as_seen(self, item: WireItem | None, *, now: float) -> WireItem | None:
        """A target's ``item`` as verify compares it."""
        if item is None or self.expired(item, now=now):
            return None
        return self.strip(item)

    def _is_heartbeat(self, keys: WireItem) -> bool:
        prefix = self.heartbeat_prefix
        return prefix is not None and any(v.startswith(prefix) for _, _, v in item_key(keys))


EVERYTHING = Selection()
