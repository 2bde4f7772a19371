"""What verify calls each difference (DESIGN §5b): missing, extra, stale, resurrected,
version regression, judged on what readers see."""

from __future__ import annotations

from replicator.apply.rule import visible
from replicator.models import Meta, WireItem, number, stored_from_item


def kind_of(source: WireItem | None, target: WireItem | None, meta: Meta) -> str | None:
    """How the target differs from the expected state as readers see them (None: it does not)."""
    seen_source, seen_target = visible(source, meta), visible(target, meta)
    if seen_source == seen_target:
        return None
    if seen_target is None:
        return "version regression" if _regressed(source, target, meta) else "missing"
    if seen_source is None:
        expected = stored_from_item(source, meta)
        return "resurrected" if expected is not None and expected.tombstone else "extra"
    return "stale"


def _regressed(source: WireItem | None, target: WireItem | None, meta: Meta) -> bool:
    # The source re-created the key below the version of the tombstone the target holds:
    # the active-active contract was broken and last-writer-wins keeps the delete.
    stored = stored_from_item(target, meta)
    if source is None or stored is None or not stored.tombstone:
        return False
    live = number(source.get(meta.version))
    return live is not None and stored.version is not None and live <= stored.version


def winner_kind(
    winner: WireItem | None, item: WireItem | None, regions: tuple[str, str], meta: Meta
) -> str:
    """Active-active: a live ``item`` where the winner is a tombstone (regions: winner's, item's).

    Its own origin's tombstone outranking it means the origin re-created the key below
    the tombstone (the contract breach of §3); otherwise it was resurrected.
    """
    tombstone = stored_from_item(winner, meta)
    live = stored_from_item(item, meta)
    if tombstone is None or live is None or live.version is None:
        return "resurrected"
    same_origin = live.origin(regions[1]) == tombstone.origin(regions[0])
    below = tombstone.version is not None and live.version <= tombstone.version
    return "version regression" if same_origin and below else "resurrected"
