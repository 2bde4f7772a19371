"""One Lambda invocation's batch: what is settled on every target, and when to stop.

The event source mapping checkpoints everything before the sequence number the
handler reports, so the handler must know, per record, whether every target has it
(applied, superseded, duplicate or dead-lettered). The applier does not say; the
writer and DLQ it is given here note each settled write. From a DynamoDB stream, a
key's writes go out one at a time in stream order (and a coalesced write stands for its
whole run), so a settled write settles every record of its key up to its sequence
number. From a Kinesis stream order is not write order (DESIGN §4c): a key's batch
coalesces to the changes that supersede the rest (one-way: every change of the greatest
ts), so a settled one settles every change of the key it superseded, while each kept
change (a tie must meet rule K) settles only itself and its redeliveries. The response
names the first record in the batch's order that some target does not have.

An invocation stops starting writes (and dead letters) once ``stop`` is set: when
the remaining time falls below the margin, or when a write kept failing for a
retryable reason. The rest is reported and the mapping delivers it again.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass
from typing import Any

from replicator.apply.applier import ChangeWriter, DeadLetterSink
from replicator.errors import AwsError, ShutdownInterrupted
from replicator.lambda_mode.metrics import EmfMetrics
from replicator.models import Change, ItemKey, Outcome, TargetRef
from replicator.pipeline.batches import Dead
from replicator.stream.records import sequence_of

# Attempts of one write within an invocation. Past them the record is reported: a
# retry by the mapping costs nothing while it waits, an invocation waiting is billed.
WRITE_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class TargetWork:
    """What one target takes of a batch: its changes in stream order, the same coalesced
    per key (what is written), and the records to dead-letter."""

    changes: list[Change]
    coalesced: dict[ItemKey, list[Change]]
    dead: Dead


class Invocation:
    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop
        self._work: dict[TargetRef, TargetWork] = {}
        # Per target, the changes by sequence number: a dead letter names only its record.
        self._changes: dict[TargetRef, dict[str, Change]] = {}
        self._settled: dict[TargetRef, dict[ItemKey, str]] = collections.defaultdict(dict)
        self._events: dict[TargetRef, dict[ItemKey, set[str]]] = collections.defaultdict(
            lambda: collections.defaultdict(set)
        )
        self._dead_lettered: dict[TargetRef, set[str]] = collections.defaultdict(set)

    def expect(self, work: dict[TargetRef, TargetWork]) -> None:
        """What each target takes of the batch, to tell what is settled."""
        self._work = work
        self._changes = {t: {c.sequence_number: c for c in w.changes} for t, w in work.items()}

    def settled(self, target: TargetRef, change: Change) -> None:
        """``change`` is settled on ``target``, and with it every record it stands for."""
        if change.incoming.ts is None:
            upto = self._settled[target]
            upto[change.key] = max(upto.get(change.key, ""), change.incoming.seq)
        else:
            self._events[target][change.key].add(change.incoming.event_id)

    def dead_lettered(self, target: TargetRef, record: dict[str, Any]) -> None:
        seq = sequence_of(record)
        self._dead_lettered[target].add(seq)
        change = self._changes.get(target, {}).get(seq)
        if change is not None:
            self.settled(target, change)

    def first_unsettled(self, records: list[dict[str, Any]]) -> str | None:
        """The sequence number of the batch's first record some target does not have yet."""
        unsettled: set[str] = set()
        for target, work in self._work.items():
            gone = self._dead_lettered[target]
            unsettled.update(
                c.sequence_number for c in work.changes if not self._has(target, work, c)
            )
            unsettled.update(seq for r, _ in work.dead if (seq := sequence_of(r)) not in gone)
        return next((seq for r in records if (seq := sequence_of(r)) in unsettled), None)

    def _has(self, target: TargetRef, work: TargetWork, change: Change) -> bool:
        if change.incoming.ts is None:  # stream order: a key's later write settles it
            return self._settled[target].get(change.key, "") >= change.incoming.seq
        # Kinesis: the key's coalesced changes (each its own eventID) supersede the rest.
        kept = {c.incoming.event_id for c in work.coalesced.get(change.key, [])}
        done = self._events[target].get(change.key, set()) & kept
        return change.incoming.event_id in done if change.incoming.event_id in kept else bool(done)


class InvocationWriter:
    """A target's writer within one invocation: notes settled writes, gives up in time."""

    def __init__(
        self,
        writer: ChangeWriter,
        invocation: Invocation,
        *,
        source_table: str,
        target: TargetRef,
        metrics: EmfMetrics,
    ) -> None:
        self._writer = writer
        self._invocation = invocation
        self._source_table = source_table
        self._target = target
        self._metrics = metrics
        self._attempts: collections.Counter[str] = collections.Counter()

    async def put(self, change: Change, *, now: float) -> Outcome:
        _refuse_after_stop(self._invocation)
        try:
            outcome = await self._writer.put(change, now=now)
        except AwsError as exc:
            if exc.retryable and not exc.record_fault:
                self._attempts[change.sequence_number] += 1
                if self._attempts[change.sequence_number] >= WRITE_ATTEMPTS:
                    self._invocation.stop.set()
                    raise ShutdownInterrupted(
                        f"write to {self._target} failed {WRITE_ATTEMPTS} times ({exc}); "
                        "the record is reported for the mapping to retry"
                    ) from exc
                self._metrics.write_retried(self._source_table, self._target)
            raise
        self._invocation.settled(self._target, change)
        return outcome


class InvocationDeadLetters:
    """The DLQ within one invocation: notes what was dead-lettered, per target."""

    def __init__(self, dlq: DeadLetterSink, invocation: Invocation) -> None:
        self._dlq = dlq
        self._invocation = invocation

    async def put(
        self,
        *,
        source_table: str,
        target: TargetRef,
        record: dict[str, Any],
        reason: str,
        recreate: bool = False,
    ) -> None:
        _refuse_after_stop(self._invocation)
        # The DLQ's retry policy waits a failing put out for as long as it lasts; within an
        # invocation that is only until ``stop``: the record is reported and comes back.
        put = asyncio.ensure_future(
            self._dlq.put(
                source_table=source_table,
                target=target,
                record=record,
                reason=reason,
                recreate=recreate,
            )
        )
        stopped = asyncio.ensure_future(self._invocation.stop.wait())
        try:
            await asyncio.wait((put, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not put.done():
                put.cancel()
                await asyncio.wait((put,))  # wait, not await: its cancellation is ours
        if put.cancelled():
            raise ShutdownInterrupted("a dead letter was still failing when the invocation stopped")
        put.result()  # its error, if it failed for good
        self._invocation.dead_lettered(target, record)


def _refuse_after_stop(invocation: Invocation) -> None:
    if invocation.stop.is_set():
        raise ShutdownInterrupted("the invocation stopped starting writes; the rest is reported")
