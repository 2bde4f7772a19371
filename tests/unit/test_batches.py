"""How a lane merges the batches queued behind the one it takes (``merge_waiting``)."""

from __future__ import annotations

import asyncio

import pytest

from replicator.models import Meta
from replicator.pipeline.batches import Decoded, decode, merge_waiting
from replicator.stream.fake_records import stream_record
from replicator.stream.reader import Batch

pytestmark = pytest.mark.timeout(5)

META = Meta(version="version")


def batch(first: int, size: int) -> Decoded:
    records = [
        stream_record("INSERT", {"pk": f"k{n}"}, new={"version": 1}, sequence=str(n))
        for n in range(first, first + size)
    ]
    changes, dead = decode(records, here="us-east-1", meta=META, table="t", skipped=lambda _: None)
    return Decoded(Batch("shard", records, str(first + size - 1), False), changes, dead)


def test_queued_batches_are_merged_until_a_page_is_held_the_rest_stay_queued() -> None:
    queue: asyncio.Queue[Decoded | None] = asyncio.Queue()
    for first in (3, 6, 9):
        queue.put_nowait(batch(first, 3))
    queue.put_nowait(None)

    merged, ended = merge_waiting(batch(0, 3), queue, most=5)

    assert not ended
    assert merged.batch.last_sequence == "5"
    assert [c.incoming.seq for c in merged.changes] == [f"{n:040d}" for n in range(6)]
    assert queue.qsize() == 3  # two batches and the end: the next take merges them


def test_small_batches_merge_up_to_the_end_of_the_lane() -> None:
    queue: asyncio.Queue[Decoded | None] = asyncio.Queue()
    queue.put_nowait(batch(1, 1))
    queue.put_nowait(None)

    merged, ended = merge_waiting(batch(0, 1), queue, most=1000)

    assert ended
    assert merged.batch.last_sequence == "1"
    assert len(merged.batch.records) == 2
