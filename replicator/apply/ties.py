"""A tie of rule K settled by the source (DESIGN §4c).

Two records of one key with the same ts and different eventIDs: their order is
unknown, so neither may win by arrival. The writer reads the source item (strongly
consistent) and writes what it holds, stamped with the tie's ts and ``_rep_event =
resolved``; every tie meeting reads again, since a tick's third write may come later.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Protocol

from replicator.apply.rulek import RESOLVED
from replicator.aws.classify import classify
from replicator.aws.json_client import DynamoDB
from replicator.models import Change, Meta, WireItem, is_tombstone, number


class SourceItems(Protocol):
    async def read(self, keys: WireItem) -> WireItem | None:
        """The source table's item now (strongly consistent); None when it is gone."""
        ...


class SourceReads:
    """``SourceItems`` over the source region's DynamoDB client; ``on_read`` counts reads."""

    def __init__(self, client: DynamoDB, table: str, *, on_read: Callable[[], None]) -> None:
        self._client = client
        self._table = table
        self._on_read = on_read

    async def read(self, keys: WireItem) -> WireItem | None:
        self._on_read()
        try:
            answer = await self._client.get_item(
                TableName=self._table, Key=keys, ConsistentRead=True
            )
        except Exception as exc:
            raise classify(exc) from exc
        item: WireItem | None = answer.get("Item")
        return item


def resolved(
    change: Change, source: WireItem | None, stored: WireItem | None, *, meta: Meta
) -> Change:
    """The change that writes the source's state over a tie: the live item, or a
    tombstone at the stored version when the source item is gone."""
    incoming = dataclasses.replace(change.incoming, event_id=RESOLVED, recreate=False)
    if source is None or is_tombstone(source, meta):
        version = number((stored or {}).get(meta.version))
        item = None
    else:
        version = number(source.get(meta.version))
        item = source
    incoming = dataclasses.replace(
        incoming,
        version=incoming.version if version is None else version,
        tombstone=item is None,
    )
    return dataclasses.replace(change, incoming=incoming, item=item, heals_zombie=False)
