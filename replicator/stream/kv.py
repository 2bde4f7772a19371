"""``_rep_kv``, the history summary the conflict feed reads (DESIGN §4b, "Metadata").

A kv maps a region to the greatest ``okey`` of that region's writes in a write's
history, ``okey(w) = 2·version + tombstone``: a tombstone of version v sorts above the
live write of version v that it deleted. Only active-active mode computes or stores it.
Pure functions only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from replicator.models import Change, Meta, WireItem, number, stored_from_item

Kv = dict[str, Decimal]
# A region absent from a kv knows no write of that region: below every okey.
UNKNOWN = Decimal("-Infinity")


def okey(version: Decimal, tombstone: bool) -> Decimal:
    return 2 * version + (1 if tombstone else 0)


def merge(kvs: Iterable[Mapping[str, Decimal]]) -> Kv:
    """The greater value per region: commutative, idempotent, monotone."""
    merged: Kv = {}
    for kv in kvs:
        for region, value in kv.items():
            if value > merged.get(region, UNKNOWN):
                merged[region] = value
    return merged


def carried(item: WireItem, meta: Meta) -> Kv | None:
    """The ``_rep_kv`` attribute as stored (None when the item has none: a PutItem by an
    application drops it, an UpdateItem keeps it)."""
    attribute = item.get(meta.kv)
    if attribute is None or "M" not in attribute:
        return None
    kv: Kv = {}
    for region, value in attribute["M"].items():
        parsed = number(value)
        if parsed is not None:
            kv[region] = parsed
    return kv


def image_kv(item: WireItem, *, region: str, meta: Meta) -> Kv:
    """kv of an image stored in ``region``: its ``_rep_kv`` merged with its own okey under
    its origin (origin and tombstone as §3 defines them)."""
    own = carried(item, meta) or {}
    stored = stored_from_item(item, meta)
    if stored is None or stored.version is None:
        return own
    return merge((own, {stored.origin(region): okey(stored.version, stored.tombstone)}))


def change_kv(change: Change, *, here: str, meta: Meta) -> Kv:
    """kv of a record read from region ``here``'s stream: kv(OldImage) merged with
    ``{here: okey(X)}``; a REMOVE's okey is 2·OldImage.version + 1 (``incoming`` says so)."""
    old = _old_image(change.record)
    base = image_kv(old, region=here, meta=meta) if old is not None else {}
    incoming = change.incoming
    return merge((base, {here: okey(incoming.version, incoming.tombstone)}))


def old_image_kv(change: Change, *, here: str, meta: Meta) -> Kv:
    """kv of the OldImage of a record read from region ``here``'s stream ({} if none)."""
    old = _old_image(change.record)
    return image_kv(old, region=here, meta=meta) if old is not None else {}


def _old_image(record: dict[str, Any]) -> WireItem | None:
    body = record.get("dynamodb")
    old = body.get("OldImage") if isinstance(body, dict) else None
    return old if isinstance(old, dict) else None


def to_wire(kv: Mapping[str, Decimal]) -> dict[str, Any]:
    """A kv as a DynamoDB map attribute, region -> number."""
    return {"M": {region: {"N": str(value)} for region, value in sorted(kv.items())}}
