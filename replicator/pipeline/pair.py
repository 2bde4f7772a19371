"""The replication pipeline for one source table (DESIGN §5).

    shard discovery (parents before children, or every shard at once for
    Kinesis) -> one reader per shard -> decode
    -> per-target lane (bounded queue) -> coalesce -> TargetApplier -> checkpoint

A checkpoint for (shard, target) is written only after every record of the batch
it ends is applied or dead-lettered, so a restart resumes there and re-applies at
most one batch per lane (which the conflict rule turns into duplicates).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from replicator.apply.applier import TargetApplier
from replicator.apply.selection import EVERYTHING, Selection
from replicator.aws.backoff import Backoff
from replicator.aws.retry import RETRY_BACKOFF, RetryPolicy
from replicator.errors import AwsError, RequestError, ShutdownInterrupted
from replicator.models import Checkpoint, Meta, TargetRef
from replicator.pipeline.batches import (
    Decoded,
    created_at,
    decode,
)
from replicator.pipeline.checkpoint import CheckpointStore
from replicator.pipeline.commits import CHECKPOINT_INTERVAL_SECONDS
from replicator.pipeline.lane import Lane, padded
from replicator.stream.lineage import lineage_order, readable_shards, ready_shards
from replicator.stream.loss import losses, unreadable
from replicator.stream.positions import order_key
from replicator.stream.reader import IDLE_BACKOFF, Batch, ReaderHooks, ShardReader
from replicator.stream.source import (
    DYNAMODB_STREAMS,
    MAX_RECORDS_PER_CALL,
    Reading,
    Shard,
    StreamSource,
)
from replicator.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

QUEUED_BATCHES_PER_LANE = 4
READ_AHEAD_PAGES = 1
DISCOVERY_INTERVAL_SECONDS = 10.0


@dataclass
class PairPipeline:
    """Replicates one source table to its targets until ``stop`` is set."""

    source_table: str
    region: str
    meta: Meta
    source: StreamSource
    appliers: Sequence[TargetApplier]
    checkpoints: CheckpointStore
    metrics: Metrics
    stop: asyncio.Event
    hooks: ReaderHooks | None = None  # default: report to ``metrics``
    discovery_interval: float = DISCOVERY_INTERVAL_SECONDS
    idle_backoff: Backoff = IDLE_BACKOFF
    retry_backoff: Backoff = RETRY_BACKOFF
    records_per_call: int = MAX_RECORDS_PER_CALL
    checkpoint_interval: float = CHECKPOINT_INTERVAL_SECONDS  # per lane: at most one save
    # Active-active: the lane writing this region's own deletes as local tombstones
    # into the source table (DESIGN §4 rule 6) and healing its zombies (rule 7). It
    # takes only those.
    local_target: TargetRef | None = None
    retry: RetryPolicy | None = None  # default: waits out faults, reports to ``metrics``
    stream_arn: str = ""  # the table's stream, if start-up's description named it already
    clock: Callable[[], float] = time.time
    selection: Selection = EVERYTHING  # the pair's filter and TTL-delete policy
    reading: Reading = DYNAMODB_STREAMS  # how the stream is read
    _retry: RetryPolicy = field(init=False)
    _stream_arn: str = ""
    _positions: dict[tuple[str, TargetRef], Checkpoint] = field(default_factory=dict)
    _shard_done: asyncio.Event = field(default_factory=asyncio.Event)
    _queues: dict[TargetRef, list[asyncio.Queue[Decoded | None]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        table = self.source_table
        self._retry = self.retry or RetryPolicy(
            stop=self.stop, observer=self.metrics, backoff=self.retry_backoff
        )
        if self.hooks is None:
            self.hooks = ReaderHooks(
                on_get_records=lambda: self.metrics.get_records_call(table),
                on_retry=self.metrics.retried,
                on_trimmed=lambda shard_id, _detail: self.metrics.trimmed(table, shard_id),
                on_behind=functools.partial(self.metrics.millis_behind, table),
            )
        for applier in self.appliers:
            self.metrics.register_pair(
                table,
                applier.target,
                in_flight=lambda a=applier: a.in_flight,  # type: ignore[misc]
                concurrency_limit=lambda a=applier: a.limit.limit,  # type: ignore[misc]
                queue_depth=lambda t=applier.target: sum(  # type: ignore[misc]
                    q.qsize() for q in self._queues.get(t, [])
                ),
            )

    async def run(self) -> None:
        table = self.source_table
        try:
            stream_arn = self.stream_arn or await self._retry.call(
                "DescribeTable", self.region, lambda: self.source.stream_arn(table)
            )
            positions = await self.checkpoints.load(table)
        except ShutdownInterrupted:
            return
        listed = await self._list(stream_arn)
        if listed is None:
            return
        retention = self.reading.retention_seconds
        for loss in losses(
            positions, listed, stream_arn=stream_arn, now=self.clock(), retention=retention
        ):
            self.metrics.trimmed(table, loss.shard_id)
            log.error("%s", loss.alarm(table))
        try:
            await self._forget(unreadable(positions, listed, stream_arn=stream_arn))
        except ShutdownInterrupted:
            return
        self._stream_arn = stream_arn
        # Another stream's checkpoints never position a reader of this one.
        self._positions = {k: c for k, c in positions.items() if c.stream_arn == stream_arn}
        finished: set[str] = set()
        started: set[str] = set()
        async with asyncio.TaskGroup() as group:
            while listed is not None and not self.stop.is_set():
                shards = lineage_order(listed)
                finished |= {s.shard_id for s in shards if self._all_ended(s.shard_id)}
                for shard in self._ready(shards, finished, started):
                    started.add(shard.shard_id)
                    group.create_task(self._consume(stream_arn, shard, finished))
                unread = self._ready(shards, finished, started)
                self.metrics.shards_without_reader(table, len(unread))
                await self._wait_for_discovery()
                if not self.stop.is_set():
                    listed = await self._list(stream_arn)

    async def _list(self, stream_arn: str) -> list[Shard] | None:
        """The stream's shards; None when shutdown interrupted the listing."""
        try:
            return await self._retry.call(
                "DescribeStream", self.region, lambda: self.source.shards(stream_arn)
            )
        except ShutdownInterrupted:
            return None

    async def _wait_for_discovery(self) -> None:
        stop = asyncio.ensure_future(self.stop.wait())
        done = asyncio.ensure_future(self._shard_done.wait())
        try:
            await asyncio.wait(
                {stop, done}, timeout=self.discovery_interval, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stop.cancel()
            done.cancel()
            self._shard_done.clear()

    def _ready(self, shards: list[Shard], finished: set[str], started: set[str]) -> list[Shard]:
        if self.reading.parents_first:
            return ready_shards(shards, finished, started)
        return readable_shards(shards, finished, started)

    def _all_ended(self, shard_id: str) -> bool:
        return all(
            (cp := self._positions.get((shard_id, a.target))) is not None and cp.shard_ended
            for a in self.appliers
        )

    async def _consume(self, stream_arn: str, shard: Shard, finished: set[str]) -> None:
        lanes = [a for a in self.appliers if not self._ended(shard.shard_id, a.target)]
        starts = [self._sequence(shard.shard_id, a.target) for a in lanes]
        after = None if None in starts else min(starts, key=order_key)
        reader = ShardReader(
            self.source,
            stream_arn,
            shard.shard_id,
            after=after,
            stop=self.stop,
            hooks=self.hooks,
            idle_backoff=self.idle_backoff,
            retry_backoff=self.retry_backoff,
            limit=self.records_per_call,
            retry=self._retry,
            region=self.region,
            min_interval=self.reading.min_interval,
        )
        queues = {a.target: asyncio.Queue[Decoded | None](QUEUED_BATCHES_PER_LANE) for a in lanes}
        for target, queue in queues.items():
            self._queues.setdefault(target, []).append(queue)
            self.metrics.shard(self.source_table, shard.shard_id, target, reading=True)
        try:
            await self._read(reader, queues, lanes, shard)
        finally:
            for target, queue in queues.items():
                self._queues[target].remove(queue)
                self.metrics.shard(self.source_table, shard.shard_id, target, reading=False)
        if self._all_ended(shard.shard_id):
            finished.add(shard.shard_id)
            self._shard_done.set()

    async def _read(
        self,
        reader: ShardReader,
        queues: dict[TargetRef, asyncio.Queue[Decoded | None]],
        lanes: list[TargetApplier],
        shard: Shard,
    ) -> None:
        async with asyncio.TaskGroup() as group:
            for applier in lanes:
                target = applier.target
                lane = Lane(
                    self.source_table,
                    shard.shard_id,
                    applier,
                    self.metrics,
                    checkpoint=functools.partial(self._checkpoint, shard.shard_id, target),
                    local=target == self.local_target,
                    checkpoint_interval=self.checkpoint_interval,
                    most=self.records_per_call,
                    taken=padded(self._sequence(shard.shard_id, target)),
                )
                group.create_task(lane.run(queues[target]))
            # Read-ahead: the next page is fetched while this one is decoded and queued,
            # so the stream's round trip overlaps the lanes' work. Memory stays bounded:
            # READ_AHEAD_PAGES wait in ``pages`` and the fetcher holds one more.
            pages: asyncio.Queue[Batch | None] = asyncio.Queue(READ_AHEAD_PAGES)
            group.create_task(_fetch(reader, pages))
            while (batch := await pages.get()) is not None:
                decoded = self._decode(batch)
                for queue in queues.values():
                    await queue.put(decoded)
            for queue in queues.values():
                await queue.put(None)

    def _decode(self, batch: Batch) -> Decoded:
        table = self.source_table
        changes, dead = decode(
            batch.records,
            here=self.region,
            meta=self.meta,
            table=table,
            skipped=lambda reason: self.metrics.skipped(table, reason),
            selection=self.selection,
            kv=self.local_target is not None,
        )
        self.metrics.records_read(
            self.source_table,
            len(batch.records),
            newest_created_at=created_at(batch.records[-1]) if batch.records else None,
            shard_id=batch.shard_id,
        )
        return Decoded(batch, changes, dead)

    async def _forget(self, checkpoints: list[Checkpoint]) -> None:
        """Delete checkpoints no reader will use; housekeeping, so a refusal (a role
        granted no DeleteItem yet) is a WARNING, and replication starts all the same."""
        for checkpoint in checkpoints:
            try:
                await self.checkpoints.forget(self.source_table, checkpoint)
            except RequestError:
                raise  # a request we built wrongly: a bug, never taken in stride
            except AwsError as exc:
                log.warning(
                    "%s: %d old checkpoint(s) not deleted (%s); their loss alarm repeats at "
                    "each start until dynamodb:DeleteItem is granted on the control table",
                    self.source_table,
                    len(checkpoints),
                    exc,
                )
                return

    async def _checkpoint(self, shard_id: str, target: TargetRef, batch: Batch) -> bool:
        """Save the checkpoint after ``batch``; False when shutdown (or the lease lost)
        interrupted the save: then nothing counts it as stored."""
        sequence = batch.last_sequence or self._sequence(shard_id, target)
        checkpoint = Checkpoint(shard_id, target, sequence, batch.shard_ended, self._stream_arn)
        try:
            await self.checkpoints.save(self.source_table, checkpoint)
        except ShutdownInterrupted as exc:
            log.info("checkpoint of %s/%s not saved: %s", shard_id, target, exc)
            return False
        self._positions[(shard_id, target)] = checkpoint
        self.metrics.shard(
            self.source_table, shard_id, target, checkpoint=sequence, ended=batch.shard_ended
        )
        return True

    def _sequence(self, shard_id: str, target: TargetRef) -> str | None:
        checkpoint = self._positions.get((shard_id, target))
        return checkpoint.sequence_number if checkpoint else None

    def _ended(self, shard_id: str, target: TargetRef) -> bool:
        checkpoint = self._positions.get((shard_id, target))
        return checkpoint is not None and checkpoint.shard_ended


async def _fetch(reader: ShardReader, pages: asyncio.Queue[Batch | None]) -> None:
    async for batch in reader.batches():
        await pages.put(batch)
    await pages.put(None)
