"""One lane: a shard's batches applied to one target, several at once, checkpointed in order.

A lane that waited for each batch to finish before starting the next idled for the slowest
write of every batch while the next records queued behind it. So up to ``LANE_WINDOW``
batches are applied at once (the applier keeps per-key order), and ``LaneCommits`` saves
the checkpoint of each only once it and every batch before it settled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from replicator.apply.applier import TargetApplier
from replicator.errors import ShutdownInterrupted
from replicator.models import Outcome
from replicator.pipeline.batches import Decoded, for_target, merge_waiting, not_yet_applied
from replicator.pipeline.commits import LaneCommits, Window
from replicator.stream.positions import order_key
from replicator.stream.reader import Batch
from replicator.stream.records import coalesce, sequence_of
from replicator.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

# Batches a lane applies at once (the applier keeps per-key order). Under steady load
# batches are small, and a batch waiting for a free place waited for the slowest write
# of an older batch: with 2 places that was most of the lag on a slow target. Merged
# batches hold under two pages (``merge_waiting``), so this bounds records in flight:
# with 8 places a long drain's peak memory grew by 24 MiB (bench 5: 1.31x, goal 1.2x);
# 4 kept bench 4's lag (moto p99 0.25 s) and bench 8's rate.
LANE_WINDOW = 4


def padded(sequence: str | None) -> str | None:
    return order_key(sequence) or None  # a replay's time: nothing applied after it yet


@dataclass
class Lane:
    """One shard's batches into one target's applier."""

    source_table: str
    shard_id: str
    applier: TargetApplier
    metrics: Metrics
    checkpoint: Callable[[Batch], Awaitable[bool]]  # False: the save was interrupted
    local: bool  # the lane of this region's own local tombstones (active-active)
    checkpoint_interval: float
    most: int  # records a merged batch may hold
    # Padded sequence of the newest record handed to the applier (or checkpointed): a
    # range the stream delivers again is filtered even while it is still in flight.
    taken: str | None

    async def run(self, queue: asyncio.Queue[Decoded | None]) -> None:
        """Apply batches as they come, up to LANE_WINDOW at once; checkpoint them in order."""
        window: Window = asyncio.Queue()
        slots = asyncio.Semaphore(LANE_WINDOW)
        interrupted = asyncio.Event()
        last = False
        async with asyncio.TaskGroup() as group:
            commits = LaneCommits(self.checkpoint, interrupted, interval=self.checkpoint_interval)
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
                    work, last = merge_waiting(first, queue, most=self.most)
                    settling = group.create_task(self._settle(work, self.taken))
                    window.put_nowait((settling, work.batch))
                    # The reader never moves backwards: the newest is the batch's last.
                    self.taken = padded(work.batch.last_sequence) or self.taken
            finally:
                window.put_nowait(None)

    async def _settle(self, work: Decoded, taken: str | None) -> bool:
        """Apply or dead-letter one (merged) batch; False when shutdown stopped it.

        Records up to ``taken`` (padded) are this lane's already: settled or in flight.
        """
        target = self.applier.target
        changes, dead = for_target(work.changes, work.dead, local=self.local)
        if taken is not None:
            # The lane is ahead of the shard's slowest lane after a restart, or the
            # stream delivered a range again.
            fresh = [c for c in changes if c.position > taken]
            fresh_dead = [(r, why) for r, why in dead if not_yet_applied(sequence_of(r), taken)]
            redelivered = len(changes) - len(fresh) + len(dead) - len(fresh_dead)
            changes, dead = fresh, fresh_dead
            for _ in range(redelivered):
                self.metrics.outcome(self.source_table, target, Outcome.DUPLICATE)
        interrupted = False
        try:
            per_key = coalesce(changes, mode=self.applier.mode)
            await self.applier.apply(self.source_table, per_key, dead)
        except* ShutdownInterrupted:
            # The applier's task group wraps it; anything else in the group propagates.
            interrupted = True
            log.info(
                "lane %s/%s stopped mid-batch; resumes from its checkpoint", self.shard_id, target
            )
        return not interrupted
