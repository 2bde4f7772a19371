"""``replicator conflicts list / show``: read the conflict feeds (DESIGN §4b).

Each region's replicator keeps the losses it detected in the conflicts table of its own
region, so the feed of a mesh is the union of the conflicts tables of every region the
config names. Entries are read tolerantly: images stored as maps, compressed, or left
out (too large: only their digests are kept).
"""

from __future__ import annotations

import base64
import json
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from replicator.aws.factory import Clients
from replicator.aws.tables import describe
from replicator.config.schema import Config
from replicator.errors import ConfigError
from replicator.models import Mode, WireItem, item_key, number
from replicator.tools.scan import scan_segment
from replicator.tools.select import select_pairs


@dataclass(frozen=True, slots=True)
class Write:
    """One side of an entry: the lost write or the one that beat it."""

    origin: str
    version: Decimal
    tombstone: bool
    image: WireItem | None  # None: not stored (too large)
    kv: dict[str, Decimal]

    def as_json(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "version": _number_json(self.version),
            "tombstone": self.tombstone,
            "kv": {region: _number_json(value) for region, value in self.kv.items()},
            "image": self.image,
        }


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    pk: str
    sk: str
    table: str
    key: WireItem
    detected_in: str
    detected_at: float
    sequence_number: str
    feed_region: str  # whose conflicts table holds it
    loser: Write
    winner: Write
    resolved: str | None  # the side kept, once ``resolve`` closed the entry

    def key_text(self) -> str:
        return ", ".join(f"{name}={value}" for name, _, value in item_key(self.key))

    def line(self) -> str:
        return (
            f"{self.id}  {self.table}  {self.key_text()}  {_when(self.detected_at)}  "
            f"lost {_side_text(self.loser)}  kept {_side_text(self.winner)}  "
            f"(detected in {self.detected_in})"
            + (f"  resolved: kept {self.resolved}" if self.resolved else "")
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "table": self.table,
            "key": self.key,
            "detected_in": self.detected_in,
            "detected_at": self.detected_at,
            "sequence_number": self.sequence_number,
            "loser": self.loser.as_json(),
            "winner": self.winner.as_json(),
            "resolved": self.resolved,
        }

    def differences(self) -> list[tuple[str, Any, Any]]:
        """(attribute, loser's value, winner's value) for each attribute that differs."""
        loser, winner = self.loser.image or {}, self.winner.image or {}
        return [
            (name, loser.get(name), winner.get(name))
            for name in sorted(set(loser) | set(winner))
            if loser.get(name) != winner.get(name)
        ]


def _number_json(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _side_text(side: Write) -> str:
    kind = "delete" if side.tombstone else "write"
    return f"{side.origin} v{side.version} {kind}"


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def read_entry(row: WireItem, *, feed_region: str) -> Entry:
    images = _images(row)
    return Entry(
        id=row["id"]["S"],
        pk=row["pk"]["S"],
        sk=row["sk"]["S"],
        table=row["table"]["S"],
        key=row["key"]["M"],
        detected_in=row["detected_in"]["S"],
        detected_at=float(number(row.get("detected_at")) or 0),
        sequence_number=row.get("sequence_number", {}).get("S", ""),
        feed_region=feed_region,
        loser=_write(row, "loser", images),
        winner=_write(row, "winner", images),
        resolved=row.get("resolved", {}).get("S"),
    )


def _images(row: WireItem) -> Mapping[str, WireItem | None]:
    compressed = row.get("images", {}).get("B")
    if compressed is not None:
        # Binaries travel as base64 text, as DynamoDB JSON spells them.
        stored: dict[str, WireItem] = json.loads(zlib.decompress(base64.b64decode(compressed)))
        return stored
    return {name: row[name]["M"] for name in ("loser_image", "winner_image") if name in row}


def _write(row: WireItem, side: str, images: Mapping[str, WireItem | None]) -> Write:
    kv = row.get(f"{side}_kv", {}).get("M", {})
    return Write(
        origin=row[f"{side}_origin"]["S"],
        version=number(row[f"{side}_version"]) or Decimal(0),
        tombstone=bool(row.get(f"{side}_tombstone", {}).get("BOOL", False)),
        image=images.get(f"{side}_image"),
        kv={region: Decimal(value["N"]) for region, value in kv.items()},
    )


def active_active(config: Config) -> None:
    if config.mode is not Mode.ACTIVE_ACTIVE:
        raise ConfigError(
            "mode is one-way: last-writer-wins discards no write there, so there is no "
            "conflict feed — set mode: active-active if several regions write the same keys"
        )


async def list_entries(
    config: Config, *, pair: str | None = None, since: float | None = None
) -> list[Entry]:
    """Every entry of every region's feed (of the pair's tables), newest last.

    ``since``: only those detected in the last that many seconds.
    """
    active_active(config)
    pairs = select_pairs(config, pair)
    tables = {p.source_table for p in pairs} | {t.table for p in pairs for t in p.targets}
    oldest = time.time() - since if since is not None else None
    found: list[Entry] = []
    clients = Clients(config.endpoints)
    try:
        for region in config.regions:
            client = await clients.json("dynamodb", region)
            if await describe(client, config.conflicts_table) is None:
                continue  # created with its region's replicator: none ran there yet
            async for page in scan_segment(client, config.conflicts_table, 0, 1, consistent=True):
                found += [read_entry(row, feed_region=region) for row in page.items]
    finally:
        await clients.aclose()
    found = [e for e in found if e.table in tables and (oldest is None or e.detected_at >= oldest)]
    return sorted(found, key=lambda e: (e.detected_at, e.id))


async def find(config: Config, entry_id: str) -> Entry:
    for entry in await list_entries(config):
        if entry.id == entry_id:
            return entry
    raise ConfigError(
        f"no conflict entry has id {entry_id} — `replicator conflicts list` shows the ids"
    )
