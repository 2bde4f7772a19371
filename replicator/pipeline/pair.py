"""The replication pipeline for one source table (DESIGN §5).

    shard discovery (parents before children) -> one reader per shard -> decode
    -> per-target lane (bounded queue) -> coalesce -> TargetApplier -> checkpoint

A checkpoint for (shard, target) is written only after every record of the batch
it ends is applied or dead-lettered, so a restart resumes there and re-applies at
most one batch per lane (which the conflict rule turns into duplicates).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from replicator.apply.applier import TargetApplier
from replicator.aws.backoff import Backoff
from replicator.aws.retry import RETRY_BACKOFF, RetryPolicy
from replicator.errors import AwsError, RequestError, ShutdownInterrupted
from replicator.models import Checkpoint, Meta, Outcome, TargetRef, pad_seq
from replicator.pipeline.batches import (
    Decoded,
    created_at,
    decode,
    for_target,
    merge_waiting,
    not_yet_applied,
)
from replicator.pipeline.checkpoint import CheckpointStore
from replicator.pipeline.commits import CHECKPOINT_INTERVAL_SECONDS, LaneCommits, Window
from replicator.stream.lineage import lineage_order, ready_shards
from replicator.stream.loss import losses, unreadable
from replicator.stream.reader import IDLE_BACKOFF, Batch, ReaderHooks, ShardReader
from replicator.stream.records import coalesce, sequence_of
from replicator.stream.source import MAX_RECORDS_PER_CALL, Shard, StreamSource
from replicator.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

QUEUED_BATCHES_PER_LANE = 4
READ_AHEAD_PAGES = 1
# Batches a lane applies at once (the applier keeps per-key order). Under steady load
# batches are small, and a batch waiting for a free place waited for the slowest write
# of an older batch: with 2 places that was most of the lag on a slow target. Merged
# batches hold under two pages (``merge_waiting``), so this bounds records in flight:
# with 8 places a long drain's peak memory grew by 24 MiB (bench 5: 1.31x, goal 1.2x);
# 4 kept bench 4's lag (moto p99 0.25 s) and bench 8's rate.
LANE_WINDOW = 4
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
        for loss in losses(positions, listed, stream_arn=stream_arn, now=self.clock()):
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
                for shard in ready_shards(shards, finished, started):
                    started.add(shard.shard_id)
                    group.create_task(self._consume(stream_arn, shard, finished))
                unread = ready_shards(shards, finished, started)
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

    def _all_ended(self, shard_id: str) -> bool:
        return all(
            (cp := self._positions.get((shard_id, a.target))) is not None and cp.shard_ended
            for a in self.appliers
        )

    async def _consume(self, stream_arn: str, shard: Shard, finished: set[str]) -> None:
        lanes = [a for a in self.appliers if not self._ended(shard.shard_id, a.target)]
        starts = [self._sequence(shard.shard_id, a.target) for a in lanes]
        after = None if None in starts else min(starts, key=lambda s: pad_seq(s or ""))
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
                group.create_task(self._lane(shard.shard_id, applier, queues[applier.target]))
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
            skipped=lambda reason: self.metrics.skipped(table, reason),
            kv=self.local_target is not None,
        )
        self.metrics.records_read(
            self.source_table,
            len(batch.records),
            newest_created_at=created_at(batch.records[-1]) if batch.records else None,
            shard_id=batch.shard_id,
        )
        return Decoded(batch, changes, dead)

    async def _lane(
        self, shard_id: str, applier: TargetApplier, queue: asyncio.Queue[Decoded | None]
    ) -> None:
        """Apply batches as they come, up to LANE_WINDOW at once; checkpoint them in order.

        A lane that waited for each batch to finish before starting the next idled for
        the slowest write of every batch while the next records queued behind it.
        """
        window: Window = asyncio.Queue()
        slots = asyncio.Semaphore(LANE_WINDOW)
        interrupted = asyncio.Event()
        last = False
        # Padded sequence of the newest record handed to the applier (or checkpointed):
        # a range the stream delivers again is filtered even while it is still in flight.
        taken = _padded(self._sequence(shard_id, applier.target))
        async with asyncio.TaskGroup() as group:
            commits = LaneCommits(
                lambda batch: self._checkpoint(shard_id, applier.target, batch),
                interrupted,
                interval=self.checkpoint_interval,
            )
            group.create_task(commits.run(window, slots))
            try:
                while not last:
                    await slots.acquire()  # before taking a batch: a full lane holds none
                    if (first := await queue.get()) is None:
                        break
                    if interrupted.is_set():
                        # Nothing after an interrupted batch may be applied or checkpointed;
                        # keep taking batches until the reader (stopping too) ends the lane,
                        # so that it never waits forever for room in this queue.
                        while await queue.get() is not None:
                            pass
                        break
                    work, last = merge_waiting(first, queue, most=self.records_per_call)
                    settling = group.create_task(self._settle(shard_id, applier, work, taken))
                    window.put_nowait((settling, work.batch))
                    # The reader never moves backwards: the newest is the batch's last.
                    taken = _padded(work.batch.last_sequence) or taken
            finally:
                window.put_nowait(None)

    async def _settle(
        self, shard_id: str, applier: TargetApplier, work: Decoded, taken: str | None
    ) -> bool:
        """Apply or dead-letter one (merged) batch on one lane; False when shutdown stopped it.

        Records up to ``taken`` (padded) are this lane's already: settled or in flight.
        """
        target = applier.target
        changes, dead = for_target(work.changes, work.dead, local=target == self.local_target)
        if taken is not None:
            # The lane is ahead of the shard's slowest lane after a restart, or the
            # stream delivered a range again.
            fresh = [c for c in changes if c.incoming.seq > taken]
            fresh_dead = [(r, why) for r, why in dead if not_yet_applied(sequence_of(r), taken)]
            redelivered = len(changes) - len(fresh) + len(dead) - len(fresh_dead)
            changes, dead = fresh, fresh_dead
            for _ in range(redelivered):
                self.metrics.outcome(self.source_table, target, Outcome.DUPLICATE)
        interrupted = False
        try:
            await applier.apply(self.source_table, coalesce(changes), dead)
        except* ShutdownInterrupted:
            # The applier's task group wraps it; anything else in the group propagates.
            interrupted = True
            log.info("lane %s/%s stopped mid-batch; resumes from its checkpoint", shard_id, target)
        return not interrupted

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


def _padded(sequence: str | None) -> str | None:
    return pad_seq(sequence) if sequence else None
