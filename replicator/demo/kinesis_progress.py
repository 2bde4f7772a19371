"""How far the lab's Kinesis bridge has got: what ``drained`` and its linger wait on.

A change written before a moment is in the stream once every source shard had a read,
begun after that moment, that found nothing new (everything before it was read and
handed on), and the puts under way then have finished.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from replicator.stream.source import MAX_RECORDS_PER_CALL, Page, Shard, StreamSource


@dataclass(slots=True)
class Reading:
    """One source shard being read; ``last_empty`` numbers its last read that found nothing."""

    table: str
    shard_id: str
    last_empty: int = 0
    idle_since: float | None = None
    ended: bool = False


class Progress:
    """What the bridge has read and put so far: what ``drained`` and the linger wait on."""

    def __init__(self, tables: int) -> None:
        self.reads = 0  # GetRecords calls begun, numbered
        self.readings: list[Reading] = []
        self.listed: set[str] = set()  # tables whose shards were listed
        self.in_flight: set[int] = set()  # puts under way
        self._tables = tables
        self._changed = asyncio.Condition()

    async def changed(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        async with self._changed:
            await self._changed.wait_for(condition)

    def caught_up_since(self, mark: int) -> bool:
        """Whether every shard had a read that found nothing, begun after read ``mark``."""
        return len(self.listed) == self._tables and all(
            reading.ended or reading.last_empty > mark for reading in self.readings
        )

    def idle_for(self, seconds: float) -> bool:
        now = time.monotonic()
        return all(
            reading.ended
            or (reading.idle_since is not None and now - reading.idle_since >= seconds)
            for reading in self.readings
        )


class Watched:
    """The source as one shard's reader sees it, noting the reads that found nothing new.

    ``ShardReader`` never yields an empty batch; the bridge needs to know when a shard
    was caught up, to tell when every change written before a moment has been read.
    """

    def __init__(self, source: StreamSource, progress: Progress, reading: Reading) -> None:
        self._source = source
        self._progress = progress
        self._reading = reading

    async def stream_arn(self, table: str) -> str:
        return await self._source.stream_arn(table)

    async def shards(self, stream_arn: str) -> list[Shard]:
        return await self._source.shards(stream_arn)

    async def iterator(self, stream_arn: str, shard_id: str, *, after: str | None) -> str:
        return await self._source.iterator(stream_arn, shard_id, after=after)

    async def get_records(self, iterator: str, *, limit: int = MAX_RECORDS_PER_CALL) -> Page:
        self._progress.reads += 1
        number = self._progress.reads
        page = await self._source.get_records(iterator, limit=limit)
        if page.records:
            self._reading.idle_since = None
        else:
            self._reading.last_empty = number
            if self._reading.idle_since is None:
                self._reading.idle_since = time.monotonic()
        await self._progress.changed()
        return page
