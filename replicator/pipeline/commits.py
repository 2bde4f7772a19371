"""``LaneCommits``: checkpoints one lane's batches in stream order, at most once per interval.

A batch's checkpoint is safe once it and every batch before it settled (applied or
dead-lettered). Saving after every batch cost one conditional PutItem on the control
table per batch: under steady load, batches are small and many, and those writes went
to the same source-region endpoint the stream is read from. So only the newest safe
position is saved, when ``interval`` has passed since the last save (also while the
lane waits for more), when its shard ended (children may start), and when the lane
ends (shutdown drains, then checkpoints). A restart re-applies at most ``interval``
worth of settled records more, which the conflict rule turns into duplicates.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from replicator.stream.reader import Batch

T = TypeVar("T")
CHECKPOINT_INTERVAL_SECONDS = 1.0

Window = asyncio.Queue[tuple[asyncio.Task[bool], Batch] | None]


@dataclass
class LaneCommits:
    """Settles a lane's window in order and saves its checkpoints (``save`` says if it did)."""

    save: Callable[[Batch], Awaitable[bool]]
    # Set by the lane's own failures and here: after a batch that shutdown interrupted,
    # or a save it interrupted, the lane applies nothing more.
    interrupted: asyncio.Event
    interval: float = CHECKPOINT_INTERVAL_SECONDS
    clock: Callable[[], float] = time.monotonic
    _unsaved: Batch | None = None  # the newest settled batch whose checkpoint is not saved
    _saved_at: float = -math.inf
    _stopped: bool = False  # a save was interrupted: no more saves

    async def run(self, window: Window, slots: asyncio.Semaphore) -> None:
        """Until the lane ends (``None``); each settled batch frees a place in ``slots``.

        Nothing after an interrupted batch is checkpointed; the batches before it are.
        """
        interrupted = self.interrupted
        while (entry := await self._saving_during(window.get())) is not None:
            settling, batch = entry
            settled = await self._saving_during(settling)
            slots.release()
            if not settled:
                interrupted.set()
            if interrupted.is_set() or self._stopped:
                continue
            self._settled(batch)
            if batch.shard_ended or self.clock() - self._saved_at >= self.interval:
                await self._flush()
        if self._unsaved is not None and not self._stopped:
            await self._flush()

    def _settled(self, batch: Batch) -> None:
        if batch.last_sequence is None and self._unsaved is not None:
            # An empty batch (a closed shard's last) ends where the unsaved one did.
            batch = dataclasses.replace(batch, last_sequence=self._unsaved.last_sequence)
        self._unsaved = batch

    async def _flush(self) -> None:
        batch, self._unsaved = self._unsaved, None
        assert batch is not None
        if await self.save(batch):
            self._saved_at = self.clock()
        else:
            self._stopped = True
            self.interrupted.set()

    async def _saving_during(self, waited: Awaitable[T]) -> T:
        """``waited``'s result; meanwhile the unsaved checkpoint is saved once it is due."""
        future = asyncio.ensure_future(waited)
        try:
            while self._unsaved is not None and not self._stopped and not future.done():
                left = self._saved_at + self.interval - self.clock()
                if left > 0:
                    await asyncio.wait({future}, timeout=left)
                else:
                    await self._flush()
            return await future
        finally:
            if future is not waited and not future.done():
                future.cancel()  # the queue read we started, when we are cancelled
