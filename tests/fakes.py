"""In-memory doubles of our own interfaces (DESIGN §8: fake our interfaces, not boto3).

- ``TableWriter``: a ``ChangeWriter`` over a dict table that applies the pure conflict
  rule, and can be scripted to fail, throttle or hold writes until released.
- ``DeadLetters``: a ``DeadLetterSink`` that keeps what it is given.
- ``RecordingCheckpoints``: the real ``CheckpointStore`` that also notes every save.
- ``Signal``: what tests wait on instead of sleeping; ``Gate``: holds calls until opened.

Writers and checkpoints can share one ``journal`` so that a test can check the order
of writes and checkpoints across targets.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from replicator.apply.rule import decide
from replicator.apply.writer import target_item
from replicator.errors import AwsError, RecordError
from replicator.models import (
    Change,
    Checkpoint,
    ItemKey,
    Meta,
    Mode,
    Outcome,
    Stored,
    TargetRef,
    WireItem,
    item_key,
    stored_from_item,
)
from replicator.pipeline.checkpoint import CheckpointStore
from replicator.stream.records import Skip, to_change

TOMBSTONE_TTL_SECONDS = 7 * 24 * 3600


class Signal:
    """Wakes every waiter whenever something changed; waiters re-check their condition."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def until(
        self,
        condition: Callable[[], bool],
        *,
        within: float = 5.0,
        watch: asyncio.Future[Any] | None = None,
    ) -> None:
        """Return once ``condition()`` holds; TimeoutError after ``within`` seconds.

        With ``watch`` (the task under test), its failure is raised at once instead of
        surfacing later as a timeout; its return before ``condition`` is an error too.
        """
        async with asyncio.timeout(within):
            while not condition():
                changed = asyncio.ensure_future(self._changed.wait())
                try:
                    await asyncio.wait(
                        {changed} if watch is None else {changed, watch},
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    changed.cancel()
                if watch is not None and watch.done() and not condition():
                    watch.result()
                    raise AssertionError("the task under test returned before the condition held")


class Gate:
    """Open until ``close``; then ``through`` waits (``held`` counts waiters) until ``open``."""

    def __init__(self, signal: Signal) -> None:
        self.held = 0
        self._signal = signal
        self._open = asyncio.Event()
        self._open.set()

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    async def through(self) -> None:
        if self._open.is_set():
            return
        self.held += 1
        self._signal.notify()
        try:
            await self._open.wait()
        finally:
            self.held -= 1


@dataclass(frozen=True, slots=True)
class Write:
    """One write that reached a verdict on a target."""

    target: TargetRef
    key: ItemKey
    sequence_number: str
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Saved:
    """One checkpoint that was durably saved."""

    checkpoint: Checkpoint


@dataclass(frozen=True, slots=True)
class Seek:
    """A reader asked the stream for an iterator on a shard: it is about to read it."""

    shard_id: str


Event = Write | Saved | Seek


class TableWriter:
    """A target table in a dict, written with the conflict rule (as the conditional put is).

    Scripting: ``fail_next`` raises given errors on the next attempts, ``fail_key``
    raises on every attempt for one key, ``fail_all`` on every attempt from some point
    until ``heal``, and ``hold`` keeps writes waiting until ``release``. ``turns`` makes
    every write yield to the event loop that many times, so writes to different keys
    have the chance to overlap, as network calls do.
    """

    def __init__(
        self,
        target: TargetRef,
        *,
        meta: Meta,
        mode: Mode = Mode.ONE_WAY,
        signal: Signal | None = None,
        journal: list[Event] | None = None,
        turns: int = 0,
    ) -> None:
        self.target = target
        self.items: dict[ItemKey, WireItem] = {}
        self.writes: list[Write] = []
        self.attempts = 0
        self.attempted_at: list[float] = []  # time.monotonic() of every attempt
        self.in_flight = 0
        self.max_in_flight = 0
        self.same_key_overlaps = 0
        self.signal = signal or Signal()
        self._gate = Gate(self.signal)
        self._meta = meta
        self._mode = mode
        self._journal = journal if journal is not None else []
        self._turns = turns
        self._faults: deque[AwsError] = deque()
        self._key_faults: dict[ItemKey, AwsError] = {}
        self._failing: tuple[AwsError, int] | None = None
        self._held_keys: set[ItemKey] | None = None  # None: ``hold`` holds every key
        self._keys_in_flight: set[ItemKey] = set()

    # -- scripting ----------------------------------------------------------------------

    def fail_next(self, error: AwsError, times: int = 1) -> None:
        self._faults.extend([error] * times)

    def fail_key(self, keys: WireItem, error: AwsError) -> None:
        self._key_faults[item_key(keys)] = error

    def fail_all(self, error: AwsError, *, after: int = 0) -> None:
        """Once ``after`` writes have reached a verdict, every attempt raises ``error``."""
        self._failing = (error, after)

    def heal(self) -> None:
        self._failing = None

    def hold(self, *only: WireItem) -> None:
        """Keep writes waiting until ``release``: every write, or those to the keys ``only``."""
        self._held_keys = {item_key(keys) for keys in only} or None
        self._gate.close()

    def release(self) -> None:
        self._gate.open()

    @property
    def held(self) -> int:
        """Writes waiting for ``release``."""
        return self._gate.held

    # -- reading ------------------------------------------------------------------------

    def state(self) -> dict[ItemKey, Stored]:
        return {
            key: stored
            for key, item in self.items.items()
            if (stored := stored_from_item(item, self._meta)) is not None
        }

    def applied(self) -> list[Write]:
        return [w for w in self.writes if w.outcome is Outcome.APPLIED]

    def sequences_by_key(self) -> dict[ItemKey, list[int]]:
        """Sequence numbers of the writes that reached the table, per key, in write order."""
        found: dict[ItemKey, list[int]] = {}
        for write in self.writes:
            found.setdefault(write.key, []).append(int(write.sequence_number))
        return found

    # -- ChangeWriter ---------------------------------------------------------------------

    async def put(self, change: Change, *, now: float) -> Outcome:
        key = change.key
        self.attempts += 1
        self.attempted_at.append(time.monotonic())
        if key in self._keys_in_flight:
            self.same_key_overlaps += 1
        self._keys_in_flight.add(key)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self._held_keys is None or key in self._held_keys:
                await self._gate.through()
            for _ in range(self._turns):
                await asyncio.sleep(0)
            if self._faults:
                raise self._faults.popleft()
            if self._failing is not None and len(self.writes) >= self._failing[1]:
                raise self._failing[0]
            if key in self._key_faults:
                raise self._key_faults[key]
            outcome = self._decide(change, now)
            write = Write(self.target, key, change.sequence_number, outcome)
            self.writes.append(write)
            self._journal.append(write)
            return outcome
        finally:
            self.in_flight -= 1
            self._keys_in_flight.discard(key)
            self.signal.notify()

    def _decide(self, change: Change, now: float) -> Outcome:
        stored = stored_from_item(self.items.get(change.key), self._meta)
        outcome = decide(stored, change.incoming, here=self.target.region, mode=self._mode)
        if outcome is Outcome.APPLIED:
            expires_at = int(now) + TOMBSTONE_TTL_SECONDS
            self.items[change.key] = target_item(change, meta=self._meta, expires_at=expires_at)
        return outcome


@dataclass(frozen=True, slots=True)
class DeadLetter:
    source_table: str
    target: TargetRef
    record: dict[str, Any]
    reason: str
    recreate: bool = False

    @property
    def sequence_number(self) -> str:
        return str(self.record["dynamodb"]["SequenceNumber"])


class DeadLetters:
    """A ``DeadLetterSink`` that keeps every entry."""

    def __init__(self, signal: Signal | None = None) -> None:
        self.entries: list[DeadLetter] = []
        self.signal = signal or Signal()

    async def put(
        self,
        *,
        source_table: str,
        target: TargetRef,
        record: dict[str, Any],
        reason: str,
        recreate: bool = False,
    ) -> None:
        self.entries.append(DeadLetter(source_table, target, record, reason, recreate))
        self.signal.notify()


class RecordingCheckpoints(CheckpointStore):
    """The real checkpoint store (control table on moto) that also notes each save.

    Closing ``gate`` keeps saves waiting until it opens.
    """

    def __init__(
        self,
        client: Any,
        table: str,
        *,
        signal: Signal | None = None,
        journal: list[Event] | None = None,
    ) -> None:
        super().__init__(client, table)
        self.saved: list[Checkpoint] = []
        self.signal = signal or Signal()
        self._journal = journal if journal is not None else []
        self.gate = Gate(self.signal)  # closed: saves wait until it opens

    async def save(self, source_table: str, checkpoint: Checkpoint) -> bool:
        await self.gate.through()
        advanced = await super().save(source_table, checkpoint)
        self.saved.append(checkpoint)
        self._journal.append(Saved(checkpoint))
        self.signal.notify()
        return advanced

    def latest(self, shard_id: str, target: TargetRef) -> Checkpoint | None:
        """The last checkpoint saved for (shard, target) by this process."""
        for checkpoint in reversed(self.saved):
            if checkpoint.shard_id == shard_id and checkpoint.target == target:
                return checkpoint
        return None


def replay(
    records: Iterable[dict[str, Any]],
    *,
    here: str,
    target_region: str,
    meta: Meta,
    mode: Mode = Mode.ONE_WAY,
) -> dict[ItemKey, Stored]:
    """The target state the pure rule gives for ``records`` applied one by one, in order.

    Records the pipeline would skip or dead-letter are left out, as it leaves them out.
    """
    table: dict[ItemKey, WireItem] = {}
    for record in records:
        try:
            change = to_change(record, here=here, meta=meta)
        except RecordError:
            continue
        if isinstance(change, Skip):
            continue
        stored = stored_from_item(table.get(change.key), meta)
        if decide(stored, change.incoming, here=target_region, mode=mode) is Outcome.APPLIED:
            table[change.key] = target_item(change, meta=meta, expires_at=0)
    return {
        key: stored
        for key, item in table.items()
        if (stored := stored_from_item(item, meta)) is not None
    }
