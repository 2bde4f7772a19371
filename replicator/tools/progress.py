"""Backfill progress per scan segment, kept in the control table so a killed run resumes.

A segment's row is written after each page it scanned was applied to every target
(or dead-lettered), so a resumed run re-applies at most one page per segment, which
the conflict rule turns into duplicates. Rows are overwritten, never deleted (the
control table needs no delete permission); a new backfill starts once every
segment of the previous one is done.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field

from replicator.aws.json_client import DynamoDB
from replicator.aws.retry import RetryPolicy
from replicator.aws.tables import partition_items
from replicator.models import WireItem


@dataclass
class SegmentProgress:
    segment: int
    total_segments: int
    run: str  # when the backfill began: rows of earlier runs are not resumed
    next_start: WireItem | None = None  # where the next page starts; None: from the beginning
    done: bool = False
    scanned: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # per target write

    @property
    def started(self) -> bool:
        return self.done or self.scanned > 0


def _partition(source_table: str) -> str:
    return f"backfill#{source_table}"


class ProgressStore:
    def __init__(self, client: DynamoDB, table: str, *, retry: RetryPolicy | None = None) -> None:
        self._client = client
        self._table = table
        self._retry = retry or RetryPolicy()
        self._region = client.region

    async def load(self, source_table: str) -> list[SegmentProgress]:
        """Every segment row of ``source_table``'s backfill, by segment number."""
        items = partition_items(
            self._client,
            self._table,
            _partition(source_table),
            retry=self._retry,
            call="backfill progress load",
        )
        rows = [_from_row(row) async for row in items]
        return sorted(rows, key=lambda p: p.segment)

    async def save(self, source_table: str, progress: SegmentProgress) -> None:
        row: WireItem = {
            "pk": {"S": _partition(source_table)},
            "sk": {"S": f"segment#{progress.segment:05}"},
            "segment": {"N": str(progress.segment)},
            "total_segments": {"N": str(progress.total_segments)},
            "run": {"S": progress.run},
            "done": {"BOOL": progress.done},
            "scanned": {"N": str(progress.scanned)},
            "outcomes": {"S": json.dumps(dict(progress.outcomes), sort_keys=True)},
            "updated_at": {"N": f"{time.time():.3f}"},
        }
        if progress.next_start is not None:
            row["next_start"] = {"S": json.dumps(progress.next_start, sort_keys=True)}
        await self._retry.call(
            "backfill progress save",
            self._region,
            lambda: self._client.put_item(TableName=self._table, Item=row),
        )


def _from_row(row: WireItem) -> SegmentProgress:
    start = row.get("next_start")
    return SegmentProgress(
        segment=int(row["segment"]["N"]),
        total_segments=int(row["total_segments"]["N"]),
        run=row["run"]["S"],
        next_start=json.loads(start["S"]) if start else None,
        done=row["done"]["BOOL"],
        scanned=int(row["scanned"]["N"]),
        outcomes=Counter(json.loads(row["outcomes"]["S"])),
    )


def resumable(stored: list[SegmentProgress]) -> list[SegmentProgress]:
    """The segments of the latest backfill if it did not finish (empty: start a new one)."""
    if not stored:
        return []
    latest = max(p.run for p in stored)
    rows = {p.segment: p for p in stored if p.run == latest}
    total = next(iter(rows.values())).total_segments
    if len(rows) == total and all(p.done for p in rows.values()):
        return []
    return [rows.get(n) or SegmentProgress(n, total, latest) for n in range(total)]
