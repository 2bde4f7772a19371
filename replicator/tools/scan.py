"""Parallel scans of a table, page by page, so memory holds a page and not the table."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from replicator.aws.json_client import DynamoDB
from replicator.aws.retry import RetryPolicy
from replicator.models import ItemKey, WireItem, item_key

# Items per page: pages are processed and dropped, so this (times the segments read
# at once) bounds the memory a scan needs, whatever the table's size.
PAGE_ITEMS = 500


@dataclass(frozen=True, slots=True)
class Page:
    items: list[WireItem]
    # Where the next page starts; None once the segment is done.
    next_start: WireItem | None


async def scan_segment(
    client: DynamoDB,
    table: str,
    segment: int,
    total_segments: int,
    *,
    start: WireItem | None = None,
    consistent: bool = False,
    page_items: int = PAGE_ITEMS,
    retry: RetryPolicy | None = None,
) -> AsyncIterator[Page]:
    """The pages of one segment of a parallel scan, from ``start`` (None: the beginning)."""
    policy, region = retry or RetryPolicy(), client.region
    kwargs: dict[str, Any] = {
        "TableName": table,
        "Segment": segment,
        "TotalSegments": total_segments,
        "ConsistentRead": consistent,
        "Limit": page_items,
    }
    if start is not None:
        kwargs["ExclusiveStartKey"] = start
    while True:
        page = await policy.call(f"scan {table}", region, lambda: client.scan(**kwargs))
        next_start: WireItem | None = page.get("LastEvaluatedKey")
        yield Page(page.get("Items", []), next_start)
        if next_start is None:
            return
        kwargs["ExclusiveStartKey"] = next_start


def key_of(item: WireItem, key_names: list[str]) -> ItemKey:
    return item_key({name: item[name] for name in key_names})


def wire_key(key: ItemKey) -> WireItem:
    return {name: {type_: value} for name, type_, value in key}


async def get_item(
    client: DynamoDB, table: str, key: ItemKey, *, retry: RetryPolicy | None = None
) -> WireItem | None:
    """The item as stored now (strongly consistent), None when there is none."""
    response = await (retry or RetryPolicy()).call(
        f"get {table}",
        client.region,
        lambda: client.get_item(TableName=table, Key=wire_key(key), ConsistentRead=True),
    )
    item: WireItem | None = response.get("Item")
    return item
