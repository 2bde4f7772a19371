"""A batch of stream records after decoding, and what a target takes of it.

Both engines use these: the container pipeline (per shard and lane) and the Lambda
handler (per invocation), so records are filtered and split per target in one place.
A lane also merges the batches already queued behind the one it takes
(``merge_waiting``) and drops records its checkpoint already covers (``not_yet_applied``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from replicator.apply.selection import EVERYTHING, Selection
from replicator.errors import RecordError
from replicator.models import Change, Meta, pad_seq
from replicator.stream.kinesis_records import is_kinesis
from replicator.stream.kinesis_records import to_change as kinesis_change
from replicator.stream.kv import change_kv
from replicator.stream.reader import Batch
from replicator.stream.records import Skip, epoch_seconds, to_change


@dataclass(frozen=True, slots=True)
class Decoded:
    """A batch after filtering: what every target lane needs from it."""

    batch: Batch
    changes: list[Change]
    dead: Dead


Dead = list[tuple[dict[str, Any], str]]  # (stream record, reason) for the DLQ


def decode(
    records: Iterable[dict[str, Any]],
    *,
    here: str,
    meta: Meta,
    table: str,
    skipped: Callable[[str], None],
    selection: Selection = EVERYTHING,
    kv: bool = False,
) -> tuple[list[Change], Dead]:
    """Filter a batch (DESIGN §4 rules 1-4, then the pair's ``selection``): the changes to
    replicate and the records to dead-letter, in stream order; ``skipped(reason)`` is told
    of each record left out. A Kinesis record of another table than the pair's source
    ``table`` is skipped (DESIGN §4c).

    With ``kv`` (active-active) each change carries its ``_rep_kv`` (DESIGN §4b); one-way
    mode computes none, and neither does a Kinesis pair, which has no conflict feed."""
    changes: list[Change] = []
    dead: Dead = []
    for record in records:
        try:
            if is_kinesis(record):
                result = kinesis_change(record, here=here, meta=meta, table=table)
            else:
                result = to_change(record, here=here, meta=meta)
        except RecordError as exc:
            dead.append((record, exc.reason))
            continue
        if not isinstance(result, Skip):
            result = selection.select(result)
        if isinstance(result, Skip):
            skipped(result.reason)
        elif kv and result.incoming.ts is None:
            changes.append(dataclasses.replace(result, kv=change_kv(result, here=here, meta=meta)))
        else:
            changes.append(result)
    return changes, dead


def for_target(changes: list[Change], dead: Dead, *, local: bool) -> tuple[list[Change], Dead]:
    """What one target takes of a batch.

    The local target (active-active: this region's own table) takes only this region's
    deletes, as tombstones (DESIGN §4 rule 6), and its zombies to heal (rule 7); dead
    letters go once per real target.
    """
    if local:
        return [c for c in changes if c.incoming.tombstone or c.heals_zombie], []
    return changes, dead


def created_at(record: dict[str, Any]) -> float | None:
    # For the iterator age only: a record whose time is unreadable is dead-lettered
    # by ``to_change``, it must not stop the reader here. A Kinesis record's is its
    # arrival in the stream, which is what its age there is counted from (and its
    # data need not be decoded twice).
    if is_kinesis(record):
        kinesis = record.get("kinesis")
        arrived = kinesis.get("approximateArrivalTimestamp") if isinstance(kinesis, dict) else None
        return float(arrived) if isinstance(arrived, int | float) else None
    body = record.get("dynamodb")
    created = body.get("ApproximateCreationDateTime") if isinstance(body, dict) else None
    if created is None:
        return None
    try:
        return epoch_seconds(created)
    except RecordError:
        return None


def not_yet_applied(sequence: str, done: str) -> bool:
    # A record without a sequence number cannot have been checkpointed: keep it.
    return not sequence or pad_seq(sequence) > done


def merge_waiting(
    first: Decoded, queue: asyncio.Queue[Decoded | None], *, most: int
) -> tuple[Decoded, bool]:
    """``first`` plus the batches already queued behind it, as one; True if the lane ended.

    Small batches are merged until the result holds ``most`` records (a page's worth),
    so a merged batch holds fewer than ``2 * most``: many small batches cost one
    checkpoint, and a lane's batches in flight stay bounded in records. Queued batches
    are consecutive in stream order, so applying them together (coalesced as one) and
    checkpointing after the last is the same as a larger GetRecords page.
    """
    merged = [first]
    size = len(first.batch.records)
    while size < most and not queue.empty():
        following = queue.get_nowait()
        if following is None:
            return _joined(merged), True
        merged.append(following)
        size += len(following.batch.records)
    return _joined(merged), False


def _joined(parts: list[Decoded]) -> Decoded:
    if len(parts) == 1:
        return parts[0]
    sequences = [p.batch.last_sequence for p in parts if p.batch.last_sequence is not None]
    batch = dataclasses.replace(
        parts[-1].batch,
        records=[r for p in parts for r in p.batch.records],
        last_sequence=sequences[-1] if sequences else None,
    )
    changes = [c for p in parts for c in p.changes]
    return Decoded(batch, changes, [d for p in parts for d in p.dead])
